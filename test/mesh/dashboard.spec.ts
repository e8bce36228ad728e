import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { chromium } from 'playwright-core'
import type { Browser } from 'playwright-core'
import { agentStatus, meshOf, peerIdOf, tmpDir, waitFor } from '@peerglance/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { download, glance, meshPerTest, seedImage, sha512 } from './helpers.ts'

// The dashboard in a real browser (Debian's chromium, driven by playwright-core): a 3-agent mesh,
// an image seeded on one agent and read on another, as the operator of the reading agent sees it.
// PEERGLANCE_SCREENSHOT=docs/dashboard.png writes the screenshot the docs show.

const { set } = meshPerTest()
let browser: Browser | undefined
afterEach(async () => { await browser?.close(); browser = undefined })

describe('the dashboard', () => {
  it('shows the agents, each image\'s coverage on each of them, the cache and transfer rates, live', async () => {
    const mesh = set(await meshOf(3))
    const [a, b, c] = mesh.agents.map(x => glance(x.url))
    const data = randomBytes(6 * 1024 * 1024)
    const seeded = await seedImage(a, [b, c], data, 'ubuntu-24.04 <script>alert(1)</script>')
    const other = await seedImage(c, [a, b], randomBytes(2 * 1024 * 1024), 'cirros-0.6')
    expect((await download(b.url, `/v2/images/${seeded}/file`)).sha512).toBe(sha512(data))

    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 60_000
    })
    const page = await browser.newPage({ viewport: { width: 1280, height: 560 } })
    const alerts: string[] = []
    page.on('dialog', async dialog => { alerts.push(dialog.message()); await dialog.dismiss() })
    await page.goto(`${b.url}/peerglance/v1/dashboard`)

    // A function, not a string: the page's CSP forbids eval, and a string predicate is evaluated so.
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#rows tr').length === 2, undefined, { timeout: 20_000 })
    expect(await page.textContent('#peer')).toBe(peerIdOf(mesh.agents[1]))
    expect(await page.textContent('#agents')).toBe('3')
    const headers: Array<string | null> = await page.$$eval('#head th', (ths: any[]) => ths.map(th => th.textContent))
    expect(headers.slice(0, 4)).toEqual(['Image', 'Status', 'Size', 'this agent'])
    expect(headers).toHaveLength(6)

    // The image B read is whole on B and on A (the seed); the other is whole only on C.
    // The page's own DOM types are not in this (node) program: cells are read as plain objects.
    const rowOf = async (id: string): Promise<string[]> => await page.$$eval('#rows tr', (trs: any[], wanted: string) => {
      const tr = trs.find(r => r.textContent?.includes(wanted))
      return tr == null ? [] : Array.from(tr.querySelectorAll('td'), (td: any) => td.textContent ?? '')
    }, id)
    const peerColumn = (peer: string): number => headers.findIndex(h => h != null && h.startsWith(peer.slice(0, 6)) && h.endsWith(peer.slice(-6)))
    const [idA, idC] = [peerIdOf(mesh.agents[0]), peerIdOf(mesh.agents[2])]
    await waitFor(async () => {
      const row = await rowOf(seeded)
      return row[3]?.startsWith('100 %') && row[peerColumn(idA)]?.startsWith('100 %') && row[peerColumn(idC)]?.startsWith('0 %')
    }, { what: 'coverage of the read image', timeoutMs: 10_000 })
    const cirros = await rowOf(other)
    expect(cirros[3]).toMatch(/^0 %/)
    expect(cirros[peerColumn(idC)]).toMatch(/^100 %/)
    expect(cirros[2]).toBe('2.0 MiB')

    // An image name is text, never markup.
    expect(alerts).toEqual([])
    expect(await page.$$eval('#rows script', (s: any[]) => s.length)).toBe(0)
    expect((await rowOf(seeded))[0]).toContain('<script>alert(1)</script>')

    // Rates and totals come from /metrics: B received the 6 MiB it served.
    await waitFor(async () => (await page.textContent('#received'))?.endsWith('MiB/s'), { what: 'a receive rate' })
    expect(await page.textContent('#served-total')).toBe('6.0 MiB in all')
    const cache = await agentStatus(b.url) as unknown as { cache: { usedBytes: number } }
    expect(cache.cache.usedBytes).toBe(data.length)
    expect(await page.textContent('#cache')).toMatch(/^6\.0 MiB \/ /)

    const shot = process.env.PEERGLANCE_SCREENSHOT ?? join(await tmpDir('peerglance-shot-'), 'dashboard.png')
    await mkdir(dirname(shot), { recursive: true })
    await page.screenshot({ path: shot, fullPage: true })
  })
})
