import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { meshOf, waitFor } from '@peerglance/testing'
import { describe, expect, it } from 'vitest'
import { glanceCli, idsIn } from '../clients/cli.ts'
import { asProject, configFile, download, glance, localShare, meshPerTest, seedImage, sha512 } from './helpers.ts'

// Glance's image cache API (/v2/cache, 2.14–2.16) over a mesh: the cache of the agent asked.

const { set, dirs } = meshPerTest()
const MiB = 1024 * 1024
const json = { accept: 'application/json' }

describe('the image cache API', () => {
  it('queues an image, fetches it through the mesh, lists it, and drops it again; glance cache-* commands work', async () => {
    // B's prefetcher waits 4 s, as Glance's waits for cache_prefetcher_interval: long enough to see
    // the image listed as queued, short enough for the test.
    const config = ['--config', await configFile('cache:\n  prefetchIntervalMs: 4000\n', dirs)]
    const mesh = set(await meshOf(2, { argsOf: i => i === 1 ? config : [] }))
    const [a, b] = mesh.agents.map(x => glance(x.url))
    const data = randomBytes(3 * MiB)
    const id = await seedImage(a, [b], data, 'to-cache')

    // Uploaded on A: the mesh's copy, not a cache entry of A's, as a Glance store is not its cache.
    expect((await a.request('GET', '/v2/cache')).body).toEqual({ cached_images: [], queued_images: [] })
    expect((await b.request('GET', '/v2/cache')).body).toEqual({ cached_images: [], queued_images: [] })

    const before = Date.now() / 1000
    expect((await b.request('PUT', `/v2/cache/${id}`)).status).toBe(202)
    // Queued, as tempest's test_image_caching_cycle expects right after, and not fetched yet.
    expect((await b.request('GET', '/v2/cache')).body).toEqual({ cached_images: [], queued_images: [id] })
    expect(await localShare(b.url, id)).toBe(0)
    await waitFor(async () => await localShare(b.url, id) === 1, { what: 'image prefetched on B', timeoutMs: 20_000 })
    const listed = await waitFor(async () => {
      const body = (await b.request('GET', '/v2/cache')).body as { cached_images: Array<Record<string, number | string>>, queued_images: string[] }
      return body.cached_images.length === 1 ? body : undefined
    }, { what: 'image listed in B\'s cache' })
    expect(listed.queued_images).toEqual([])
    expect(listed.cached_images[0]).toMatchObject({ image_id: id, hits: 0, size: data.length })
    expect(listed.cached_images[0].last_modified as number).toBeGreaterThanOrEqual(Math.floor(before))
    // A served B's prefetch; B now serves the bytes itself.
    expect((await download(b.url, `/v2/images/${id}/file`)).sha512).toBe(sha512(data))
    const hit = (await b.request('GET', '/v2/cache')).body as { cached_images: Array<{ hits: number }> }
    expect(hit.cached_images[0].hits).toBe(1)

    // The real client, whose cache commands look for API v2.16 in /versions.
    const home = join(mesh.root, 'home')
    await mkdir(home)
    const cli = glanceCli(b.url, home)
    expect(idsIn(await cli.ok(['cache-list']))).toContain(id)
    // A peer (A) holds the image whole, and minReplicas is 2 by default: B keeps its bytes but
    // drops the cache entry.
    await cli.ok(['cache-delete', id])
    expect((await b.request('GET', '/v2/cache')).body).toEqual({ cached_images: [], queued_images: [] })
    await cli.ok(['cache-queue', id])
    expect(((await b.request('GET', '/v2/cache')).body as { queued_images: string[] }).queued_images).toEqual([id])
    await waitFor(async () => ((await b.request('GET', '/v2/cache')).body as { cached_images: unknown[] }).cached_images.length === 1, { what: 'queued again and listed', timeoutMs: 20_000 })
    await cli.ok(['cache-clear', '--target', 'cache'])
    expect((await b.request('GET', '/v2/cache')).body).toEqual({ cached_images: [], queued_images: [] })
  })

  it('answers errors as Glance does: 400 for images not active or a bad clear target, 404 for unknown images, 403 for non-admins', async () => {
    const mesh = set(await meshOf(1))
    const a = glance(mesh.agents[0].url)
    const queued = await a.create({ name: 'no-data' })
    const r400 = await a.call(`/v2/cache/${queued.id}`, { method: 'PUT', headers: json })
    expect(r400.status).toBe(400)
    expect(((await r400.json()) as { message: string }).message).toContain('Only images with status active can be targeted for queueing')

    const unknown = '6f0c2ef7-0d6b-4a35-9f0c-9d7dfc1c6f3d'
    expect((await a.call(`/v2/cache/${unknown}`, { method: 'PUT', headers: json })).status).toBe(404)
    expect((await a.call(`/v2/cache/${unknown}`, { method: 'DELETE', headers: json })).status).toBe(404)

    const bad = await a.call('/v2/cache', { method: 'DELETE', headers: { ...json, 'x-image-cache-clear-target': 'everything' } })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { message: string }).message).toContain('x-image-cache-clear-target')

    const member = glance(a.url, asProject('p1', 'member'))
    for (const [method, path] of [['GET', '/v2/cache'], ['DELETE', '/v2/cache']] as const) {
      const res = await member.call(path, { method, headers: json })
      expect(res.status).toBe(403)
    }
    const { id } = await member.create({ name: 'mine', visibility: 'private' })
    await member.upload(id, randomBytes(1024))
    expect((await member.call(`/v2/cache/${id}`, { method: 'PUT', headers: json })).status).toBe(403)
    expect((await a.request('GET', '/v2/cache')).body).toEqual({ cached_images: [], queued_images: [] })
  })
})
