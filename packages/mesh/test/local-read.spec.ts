import { afterEach, describe, expect, it } from 'vitest'
import type { ChunkBlocks } from '@peerglance/interface'
import type { FsChunkStore } from '@peerglance/chunk-store'
import { cleanup, fullyConnected, KiB, readAll, seedImage, sha512, startAgent } from './fixtures.ts'

/** Passes everything to the store and counts `readChunk` calls. */
function counting (counter: { readChunk: number }) {
  return (store: FsChunkStore): ChunkBlocks => ({
    has: async cid => await store.has(cid),
    putChunk: async (cid, bytes, opts) => { await store.putChunk(cid, bytes, opts) },
    readChunk: async (cid, opts) => {
      counter.readChunk++
      return await store.readChunk(cid, opts)
    }
  })
}

describe('reads of images held entirely here', () => {
  afterEach(cleanup)

  it('go through the store range reader, byte-exact, without readChunk', async () => {
    const counter = { readChunk: 0 }
    const agent = await startAgent({ wrap: counting(counter) })
    const chunk = 64 * KiB
    const image = await seedImage(agent, 9 * chunk + 4321)
    const size = image.manifest.size

    // Pulled one at a time and copied, as the contract asks (the store reuses its buffers).
    const got = await readAll(agent.mesh.reader.read(image.imageId, image.manifest, 0, size - 1))
    expect(sha512(got)).toBe(sha512(image.bytes))
    const ranges: Array<[number, number]> = [[0, 0], [chunk - 1, chunk], [chunk + 5, 3 * chunk + 9], [size - 1, size - 1], [4 * chunk, size - 1], [10, 9]]
    for (const [start, end] of ranges) {
      const part = await readAll(agent.mesh.reader.read(image.imageId, image.manifest, start, end))
      expect(part.equals(image.bytes.subarray(start, end + 1)), `${start}-${end}`).toBe(true)
    }
    expect(counter.readChunk).toBe(0)
    // Still counted as cache hits, one per chunk touched: 10 for the whole, 1+2+3+1+6 for the ranges.
    expect(agent.mesh.metrics.totals.cacheHits).toBe(10 + 13)
    expect(agent.mesh.metrics.totals.cacheMisses).toBe(0)
  })

  it('a chunk collected since the scan is fetched from a peer and the read stays byte-exact', async () => {
    const seed = await startAgent()
    const image = await seedImage(seed, 8 * 64 * KiB)
    const counter = { readChunk: 0 }
    const leech = await startAgent({ bootstrap: seed.mesh.multiaddrs, wrap: counting(counter) })
    await fullyConnected([seed, leech])
    // The leech downloads the whole image, so its session knows it is complete.
    expect(sha512(await readAll(leech.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1)))).toBe(sha512(image.bytes))
    await expect.poll(() => leech.mesh.swarm.sessions()[0]?.complete, { timeout: 10_000 }).toBe(true)
    const served = seed.mesh.exchange.stats.getsServed
    const misses = leech.mesh.metrics.totals.cacheMisses
    counter.readChunk = 0

    const lost = image.manifest.cids[5]
    expect(await leech.store.collect([lost], async () => false)).toBe(1)
    const got = await readAll(leech.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
    expect(sha512(got)).toBe(sha512(image.bytes))
    expect(seed.mesh.exchange.stats.getsServed).toBe(served + 1)
    expect(leech.mesh.metrics.totals.cacheMisses).toBe(misses + 1)
    // Chunks 0-4 came from the range reader; chunk by chunk only from chunk 5 on (5, 6, 7; 5 fails).
    expect(counter.readChunk).toBeLessThanOrEqual(3)
  })
})

describe('the share of an image held here', () => {
  afterEach(cleanup)

  it('is checked against the files once, then kept until a chunk is added or deleted', async () => {
    const counter = { has: 0 }
    const agent = await startAgent({
      wrap: store => ({
        get generation () { return store.generation },
        has: async cid => {
          counter.has++
          return await store.has(cid)
        },
        putChunk: async (cid, bytes, opts) => { await store.putChunk(cid, bytes, opts) },
        readChunk: async (cid, opts) => await store.readChunk(cid, opts)
      })
    })
    const image = await seedImage(agent, 6 * 64 * KiB)
    expect(await agent.mesh.localShare(image.manifest)).toBe(1)
    const checks = counter.has
    expect(checks).toBeGreaterThanOrEqual(6)
    for (let i = 0; i < 5; i++) expect(await agent.mesh.localShare(image.manifest)).toBe(1)
    expect(counter.has).toBe(checks)
    // A chunk goes: the next answer looks again, and is right.
    expect(await agent.store.collect([image.manifest.cids[2]], async () => false)).toBe(1)
    expect(await agent.mesh.localShare(image.manifest)).toBeCloseTo(5 / 6, 6)
    expect(counter.has).toBeGreaterThan(checks)
  })
})
