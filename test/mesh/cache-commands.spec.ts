import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { agentStatus, meshOf } from '@peerglance/testing'
import { describe, expect, it } from 'vitest'
import { configFile, glance, localShare, meshPerTest, seedImage } from './helpers.ts'

const BIN = fileURLToPath(new URL('../../packages/agent/bin/peerglance.js', import.meta.url))
const { set, dirs } = meshPerTest()

async function peerglance (url: string, ...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile(process.execPath, [BIN, ...args, '--url', url], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (err as { code: number }).code, stdout, stderr })
    })
  })
}

describe('peerglance prefetch, pin, unpin and evict', () => {
  it('fetch an image here, keep it pinned, and evict it once unpinned and held elsewhere', async () => {
    const config = ['--config', await configFile('cache:\n  minReplicas: 1\n', dirs)]
    const mesh = set(await meshOf(2, { argsOf: i => i === 1 ? config : [] }))
    const [a, b] = mesh.agents.map(x => glance(x.url))
    const id = await seedImage(a, [b], randomBytes(3 * 1024 * 1024), 'cmd')

    const fetched = await peerglance(b.url, 'prefetch', id, '--json')
    expect(fetched.stderr).toBe('')
    expect(fetched.code).toBe(0)
    expect(JSON.parse(fetched.stdout)).toMatchObject({ id, localShare: 1 })
    expect(await localShare(b.url, id)).toBe(1)
    // status: the image here and on the one peer (the seed), and the cache's use.
    const status = await peerglance(b.url, 'status')
    expect(status.stdout).toMatch(new RegExp(`${id}\\s+active\\s+3\\.00 MiB\\s+100 %\\s+100 %\\s+cmd\\n`))
    expect(status.stdout).toMatch(/^cache {3}3\.00 MiB of /m)
    const doc = JSON.parse((await peerglance(b.url, 'status', '--json')).stdout) as { coverage: Array<{ self?: boolean, images: Record<string, number> }> }
    expect(doc.coverage.map(a => a.images[id])).toEqual([1, 1])

    expect((await peerglance(b.url, 'pin', id)).stdout).toBe(`image ${id} pinned\n`)
    expect((await agentStatus(b.url)).images.find(i => i.id === id)).toMatchObject({ pinned: true })
    const kept = await peerglance(b.url, 'evict', id)
    expect(kept.code).toBe(0)
    expect(kept.stdout).toBe(`image ${id}: dropped from the cache list, bytes kept (it is pinned here)\n`)
    expect(await localShare(b.url, id)).toBe(1)

    expect((await peerglance(b.url, 'unpin', id)).code).toBe(0)
    const evicted = await peerglance(b.url, 'evict', id, '--json')
    expect(JSON.parse(evicted.stdout)).toEqual({ id, evicted: true, localShare: 0 })
    // A, the seed, holds the only copy now and has the default minReplicas (2): it keeps it.
    const seedKeeps = await peerglance(a.url, 'evict', id)
    expect(seedKeeps.stdout).toContain('bytes kept (fewer than cache.minReplicas peers hold it whole)')
    expect(await localShare(a.url, id)).toBe(1)
  })

  it('exit 1 with the agent\'s message for an unknown image, 2 for bad usage', async () => {
    const mesh = set(await meshOf(1))
    const url = mesh.agents[0].url
    const unknown = await peerglance(url, 'pin', '0b7f7c3e-4d2a-4f6e-9d61-1a2b3c4d5e6f')
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/^peerglance: PUT \/peerglance\/v1\/pins\/0b7f7c3e-4d2a-4f6e-9d61-1a2b3c4d5e6f: 404 /)
    expect((await peerglance(url, 'prefetch')).code).toBe(2)
    expect((await peerglance(url, 'evict', 'a', 'b')).code).toBe(2)
    expect((await peerglance(url, 'prefetch', 'x', '--timeout', 'soon')).code).toBe(2)
  })
})
