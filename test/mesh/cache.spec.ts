import { randomBytes } from 'node:crypto'
import { meshOf, waitFor } from '@peerglance/testing'
import { describe, expect, it } from 'vitest'
import { chunkFiles, configFile, download, glance, localShare, logsMatching, meshPerTest, seedImage, sha512 } from './helpers.ts'

// The cache keeps what its cap allows, evicts the least recently read first, and never drops the
// mesh's last copies: several agent processes with small caps.

const { set, dirs } = meshPerTest()
const MiB = 1024 * 1024

async function cacheConfig (lines: string): Promise<string[]> {
  return ['--config', await configFile(`cache:\n  sweepIntervalMs: 300\n  reserveBytes: '0'\n${lines}`, dirs)]
}

describe('an agent whose cache passes its high watermark', () => {
  it('evicts the least recently read image that peers hold, keeps the rest, and fetches it again on demand', async () => {
    const small = await cacheConfig("  maxBytes: '10MB'\n  highWatermark: 0.9\n  lowWatermark: 0.8\n  minReplicas: 1\n")
    const mesh = set(await meshOf(2, { argsOf: i => i === 1 ? small : [] }))
    const [a, b] = mesh.agents.map(x => glance(x.url))
    const data = [randomBytes(4 * MiB), randomBytes(4 * MiB), randomBytes(4 * MiB)]
    const ids: string[] = []
    for (const [i, bytes] of data.entries()) ids.push(await seedImage(a, [b], bytes, `img-${i}`))

    // B reads 0, then 1, then 0 again (so 1 is now the least recently read), then 2: 12 MiB is over
    // the 9 MiB watermark, and evicting image 1 alone brings it down to the 8 MiB one.
    for (const i of [0, 1, 0, 2]) {
      const got = await download(b.url, `/v2/images/${ids[i]}/file`)
      expect(got.sha512).toBe(sha512(data[i]))
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    await waitFor(async () => await localShare(b.url, ids[1]) === 0, { what: 'image 1 evicted on B', timeoutMs: 15_000 })
    expect(await localShare(b.url, ids[0])).toBe(1)
    expect(await localShare(b.url, ids[2])).toBe(1)
    // Two 4 MiB images in 1 MiB chunks: the evicted one's chunk files are gone.
    await waitFor(async () => (await chunkFiles(mesh.agents[1].dataDir)).length === 8, { what: '8 chunk files on B' })
    expect(logsMatching(mesh.agents[1].logs, 'evicted image').map(l => l.imageId)).toEqual([ids[1]])
    // The seed evicted nothing: it has no cap to speak of.
    expect(await localShare(a.url, ids[1])).toBe(1)

    const again = await download(b.url, `/v2/images/${ids[1]}/file`)
    expect(again.sha512).toBe(sha512(data[1]))
  })

  it('never evicts the last copy in the mesh (an image just seeded here) nor a pinned image, even above its cap', async () => {
    const small = await cacheConfig("  maxBytes: '10MB'\n  highWatermark: 0.8\n  lowWatermark: 0.5\n  minReplicas: 1\n")
    const mesh = set(await meshOf(2, { argsOf: i => i === 0 ? small : [] }))
    const [a, b] = mesh.agents.map(x => glance(x.url))
    const data = [randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(3 * MiB)]
    const ids: string[] = []
    for (const [i, bytes] of data.entries()) ids.push(await seedImage(a, [b], bytes, `seeded-${i}`))
    expect((await a.request('PUT', `/peerglance/v1/pins/${ids[1]}`)).status).toBe(204)
    // 9 MiB held, over the 8 MiB watermark, but every image is the mesh's only copy.
    await new Promise(resolve => setTimeout(resolve, 1500))
    for (const id of ids) expect(await localShare(a.url, id)).toBe(1)
    expect(logsMatching(mesh.agents[0].logs, 'evicted image')).toEqual([])

    // B reads images 0 and 1: A may now evict 0 (B holds it), not 1 (pinned), not 2 (only copy).
    for (const i of [0, 1]) expect((await download(b.url, `/v2/images/${ids[i]}/file`)).sha512).toBe(sha512(data[i]))
    await waitFor(async () => await localShare(a.url, ids[0]) === 0, { what: 'image 0 evicted on A once B holds it', timeoutMs: 15_000 })
    expect(await localShare(a.url, ids[1])).toBe(1)
    expect(await localShare(a.url, ids[2])).toBe(1)
    // The log line comes over the agent's stdout, which may be read after its HTTP answer.
    await waitFor(() => logsMatching(mesh.agents[0].logs, 'evicted image').length > 0, { what: 'the eviction logged' })
    expect(logsMatching(mesh.agents[0].logs, 'evicted image').map(l => l.imageId)).toEqual([ids[0]])
    // A reads it back from B, the last holder now.
    expect((await download(a.url, `/v2/images/${ids[0]}/file`)).sha512).toBe(sha512(data[0]))
  })
})

describe('prefetch by tag', () => {
  it('has every agent fetch an image tagged with one of cache.prefetchTags once it is active, and no other', async () => {
    const tagged = await cacheConfig('  prefetchTags: [prefetch]\n')
    const mesh = set(await meshOf(3, { args: tagged }))
    const [a, b, c] = mesh.agents.map(x => glance(x.url))
    const wanted = randomBytes(2 * MiB)
    const { id } = await a.create({ name: 'everywhere', tags: ['prefetch'] })
    const plain = await seedImage(a, [b, c], randomBytes(MiB), 'only-on-demand')
    await a.upload(id, wanted)
    for (const agent of [b, c]) {
      await waitFor(async () => await localShare(agent.url, id) === 1, { what: `tagged image prefetched on ${agent.url}`, timeoutMs: 20_000 })
    }
    expect(await localShare(b.url, plain)).toBe(0)
    expect(await localShare(c.url, plain)).toBe(0)
    // Fetched through the mesh, so listed in Glance's cache API of each.
    expect(((await b.request('GET', '/v2/cache')).body as { cached_images: Array<{ image_id: string }> }).cached_images.map(i => i.image_id)).toEqual([id])
  })
})

describe('an upload the cache cannot hold', () => {
  it('is refused up front with 413 and a Glance error body; the image stays queued and no chunk is written', async () => {
    const small = await cacheConfig("  maxBytes: '4MB'\n")
    const mesh = set(await meshOf(1, { args: small }))
    const a = glance(mesh.agents[0].url)
    const { id } = await a.create({ name: 'too-big' })
    const res = await a.call(`/v2/images/${id}/file`, {
      method: 'PUT', headers: { accept: 'application/json', 'content-type': 'application/octet-stream', 'content-length': String(8 * MiB) }, body: randomBytes(8 * MiB)
    })
    expect(res.status).toBe(413)
    const body = await res.json() as { code: string, message: string }
    expect(body.code).toBe('413 Request Entity Too Large')
    expect(body.message).toContain('Not enough space on this agent')
    expect((await a.image(id)).status).toBe('queued')
    expect(await chunkFiles(mesh.agents[0].dataDir)).toEqual([])
  })
})
