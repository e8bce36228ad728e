import { afterEach, describe, expect, it } from 'vitest'
import type { ChunkBlocks } from '@peerglance/interface'
import type { FsChunkStore } from '@peerglance/chunk-store'
import { cleanup, fullyConnected, KiB, readAll, seedImage, sha512, startAgent, stopAgent, until } from './fixtures.ts'
import type { TestAgent } from './fixtures.ts'

/** A store that answers peers slowly, so a transfer from it lasts long enough to be cut. */
function slow (ms: number) {
  return (store: FsChunkStore): ChunkBlocks => ({
    has: async cid => await store.has(cid),
    putChunk: async (cid, bytes, opts) => { await store.putChunk(cid, bytes, opts) },
    readChunk: async (cid, opts) => {
      await new Promise(resolve => setTimeout(resolve, ms))
      return await store.readChunk(cid, opts)
    }
  })
}

/** A store that serves peers chunks with one byte flipped. */
function corrupting (store: FsChunkStore): ChunkBlocks {
  return {
    has: async cid => await store.has(cid),
    putChunk: async (cid, bytes, opts) => { await store.putChunk(cid, bytes, opts) },
    readChunk: async (cid, opts) => {
      const bytes = Buffer.from(await store.readChunk(cid, opts))
      bytes[bytes.length >> 1] ^= 0x01
      return bytes
    }
  }
}

/** The same image on both agents. */
async function shared (a: TestAgent, b: TestAgent, size: number) {
  const image = await seedImage(a, size)
  for await (const part of a.store.read(image.manifest, 0, size - 1)) void part
  const copy = await b.store.ingest((async function * () { yield image.bytes })(), { maxBytes: size })
  b.store.release(copy.cids)
  expect(copy.cids).toEqual(image.manifest.cids)
  b.manifests.set(image.imageId, a.manifests.get(image.imageId)!)
  return image
}

describe('faults during read-through', () => {
  afterEach(cleanup)

  it('a peer stopped mid-transfer: the read finishes byte-exact from the other peer', async () => {
    const a = await startAgent({ wrap: slow(15) })
    const b = await startAgent({ wrap: slow(15) })
    const image = await shared(a, b, 60 * 64 * KiB)
    const leech = await startAgent({ bootstrap: [...a.mesh.multiaddrs, ...b.mesh.multiaddrs] })
    await fullyConnected([a, b, leech])

    const reading = readAll(leech.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
    await until(() => a.mesh.exchange.stats.getsServed >= 5 && b.mesh.exchange.stats.getsServed >= 5, 10_000, 'both peers serving')
    await stopAgent(a)
    const got = await reading
    expect(sha512(got)).toBe(sha512(image.bytes))
    expect(a.mesh.exchange.stats.getsServed).toBeLessThan(image.manifest.cids.length)
  })

  it('a peer that serves corrupted chunks is detected, the read finishes byte-exact, and the peer is not asked again', async () => {
    const bad = await startAgent({ wrap: corrupting })
    const good = await startAgent()
    const first = await shared(bad, good, 30 * 64 * KiB)
    const second = await shared(bad, good, 30 * 64 * KiB)
    const leech = await startAgent({ bootstrap: [...bad.mesh.multiaddrs, ...good.mesh.multiaddrs] })
    await fullyConnected([bad, good, leech])

    const got = await readAll(leech.mesh.reader.read(first.imageId, first.manifest, 0, first.manifest.size - 1))
    expect(sha512(got)).toBe(sha512(first.bytes))
    expect(leech.mesh.metrics.totals.badChunks).toBeGreaterThanOrEqual(1)
    expect(bad.mesh.exchange.stats.getsServed).toBeGreaterThanOrEqual(1)
    await expect.poll(async () => await leech.mesh.localShare(first.manifest), { timeout: 10_000 }).toBe(1)

    // Once caught, the bad peer gets no more chunk requests, for this image or another.
    const servedByBad = bad.mesh.exchange.stats.getsServed
    const again = await readAll(leech.mesh.reader.read(second.imageId, second.manifest, 0, second.manifest.size - 1))
    expect(sha512(again)).toBe(sha512(second.bytes))
    await expect.poll(async () => await leech.mesh.localShare(second.manifest), { timeout: 10_000 }).toBe(1)
    expect(bad.mesh.exchange.stats.getsServed).toBe(servedByBad)
    expect(good.mesh.exchange.stats.getsServed).toBeGreaterThanOrEqual(second.manifest.cids.length)
  })
})
