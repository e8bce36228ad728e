import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { meshOf, tmpDir, waitFor } from '@peerglance/testing'
import type { SpawnedAgent, TestMesh } from '@peerglance/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chunkFiles, download, glance, sha512 } from '../mesh/helpers.ts'

/**
 * An image copied to a site is kept there (a site pin, apart from the operator's pins) across a
 * restart of the agent process, and let go when the site is dropped from the image while that
 * agent was down: the agent remembers what it keeps for its site, not only while it runs. Both
 * agents evict with one other complete copy in the mesh (`cache.minReplicas: 1`), so west may
 * drop its copy while east holds one.
 */

const DATA = randomBytes(3 * 1024 * 1024 + 11)
let mesh: TestMesh
let east: SpawnedAgent
let west: SpawnedAgent
let westArgs: string[]

interface StatusImage { id: string, localShare: number | null, pinned: boolean, sitePinned: boolean }

async function statusOf (agent: SpawnedAgent, id: string): Promise<StatusImage | undefined> {
  const status = await (await fetch(new URL('/peerglance/v1/status', agent.url))).json() as { images: StatusImage[] }
  return status.images.find(i => i.id === id)
}

beforeAll(async () => {
  const dir = await tmpDir('peerglance-site-pins-')
  const config = async (site: string): Promise<string[]> => {
    const file = join(dir, `${site}.yaml`)
    await writeFile(file, JSON.stringify({ agent: { site }, glance: { enabledImportMethods: ['glance-direct', 'copy-image'] }, import: { siteTimeoutMs: 60_000 }, cache: { minReplicas: 1 } }))
    return ['--config', file]
  }
  const eastArgs = await config('east')
  westArgs = await config('west')
  mesh = await meshOf(2, { argsOf: i => i === 0 ? eastArgs : westArgs })
  ;[east, west] = mesh.agents
})
afterAll(async () => { await mesh?.close() })

describe('site pins across an agent restart', () => {
  let id: string

  it('keeps a copied image pinned for its site after the agent restarts', async () => {
    const a = glance(east.url)
    id = (await a.create({ name: 'placed' })).id
    await a.upload(id, DATA)
    // Agent B announces site west within seconds of connecting; the copy waits for that.
    await waitFor(async () => (await a.request('GET', '/v2/info/stores')).body.stores.some((s: { id: string }) => s.id === 'west'), { what: 'site west known to east', timeoutMs: 30_000 })
    expect((await a.request('POST', `/v2/images/${id}/import`, { method: { name: 'copy-image' }, stores: ['west'] })).status).toBe(202)
    await waitFor(async () => (await a.image(id)).stores === 'east,west', { what: 'the copy on west', timeoutMs: 60_000 })
    await waitFor(async () => (await statusOf(west, id))?.localShare === 1, { what: 'every chunk on west\'s disk' })
    expect(await statusOf(west, id)).toMatchObject({ sitePinned: true, pinned: false })

    expect(await west.kill('SIGTERM')).toBe(0)
    west = await mesh.add({ dataDir: west.dataDir, args: westArgs })
    expect(await statusOf(west, id)).toMatchObject({ localShare: 1, sitePinned: true, pinned: false })
    expect(await download(west.url, `/v2/images/${id}/file`)).toMatchObject({ status: 200, sha512: sha512(DATA) })
  })

  it('lets the copy go when its site was dropped from the image while the agent was down', async () => {
    const held = (await chunkFiles(west.dataDir)).length
    expect(held).toBeGreaterThan(0)
    expect(await west.kill('SIGTERM')).toBe(0)
    const a = glance(east.url)
    expect((await a.request('DELETE', `/v2/stores/west/${id}`)).status).toBe(204)
    expect((await a.image(id)).stores).toBe('east')
    west = await mesh.add({ dataDir: west.dataDir, args: westArgs })
    // West hears of the change from east (anti-entropy on connect), unpins and drops its copy, which east still holds.
    await waitFor(async () => {
      const s = await statusOf(west, id)
      return s?.sitePinned === false && s.localShare === 0
    }, { what: 'west letting its copy go', timeoutMs: 60_000 })
    // Chunks nothing names any more are collected once the image is forgotten.
    await waitFor(async () => (await chunkFiles(west.dataDir)).length === 0, { what: 'west\'s chunk files gone', timeoutMs: 30_000 })
    expect(await statusOf(east, id)).toMatchObject({ localShare: 1 })
    // The image stays readable everywhere: west reads it through the mesh again.
    expect(await download(west.url, `/v2/images/${id}/file`)).toMatchObject({ status: 200, sha512: sha512(DATA) })
  })
})
