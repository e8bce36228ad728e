import { afterEach, describe, expect, it } from 'vitest'
import { cleanup, fullyConnected, KiB, readAll, seedImage, sha512, startAgent, stopAgent } from './fixtures.ts'

describe('read-through over two agents', () => {
  afterEach(cleanup)

  it('a download through a peer is byte-exact and leaves the chunks cached, so the next read needs no peer', async () => {
    const seed = await startAgent()
    const image = await seedImage(seed, 2 * 1024 * KiB + 12345)
    const leech = await startAgent({ bootstrap: seed.mesh.multiaddrs })
    await fullyConnected([seed, leech])

    const got = await readAll(leech.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
    expect(sha512(got)).toBe(sha512(image.bytes))
    expect(leech.mesh.metrics.totals.bytesReceived).toBeGreaterThanOrEqual(image.manifest.size)

    // The session keeps fetching until every chunk is local.
    await expect.poll(async () => await leech.mesh.localShare(image.manifest), { timeout: 10_000 }).toBe(1)
    await stopAgent(seed)
    const again = await readAll(leech.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
    expect(sha512(again)).toBe(sha512(image.bytes))
  })
})

describe('read-through ranges, sharing and failure', () => {
  afterEach(cleanup)

  it('serves Range reads through a peer, exact at chunk edges', async () => {
    const seed = await startAgent()
    const chunk = 64 * KiB
    const image = await seedImage(seed, 5 * chunk + 777)
    const leech = await startAgent({ bootstrap: seed.mesh.multiaddrs, init: { fetchWhole: false } })
    await fullyConnected([seed, leech])
    const size = image.manifest.size
    const ranges: Array<[number, number]> = [[0, 0], [chunk - 1, chunk], [chunk + 5, 3 * chunk + 9], [size - 1, size - 1], [4 * chunk, size - 1], [10, 9]]
    for (const [start, end] of ranges) {
      const got = await readAll(leech.mesh.reader.read(image.imageId, image.manifest, start, end))
      expect(got.equals(image.bytes.subarray(start, end + 1)), `${start}-${end}`).toBe(true)
    }
    await expect(readAll(leech.mesh.reader.read(image.imageId, image.manifest, 0, size))).rejects.toMatchObject({ name: 'RangeNotSatisfiableError' })
  })

  it('concurrent reads of one image on one agent fetch each chunk once', async () => {
    const seed = await startAgent()
    const image = await seedImage(seed, 40 * 64 * KiB)
    const leech = await startAgent({ bootstrap: seed.mesh.multiaddrs })
    await fullyConnected([seed, leech])
    const reads = await Promise.all([0, 1, 2, 3].map(async () => await readAll(leech.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))))
    for (const got of reads) expect(sha512(got)).toBe(sha512(image.bytes))
    await expect.poll(async () => await leech.mesh.localShare(image.manifest), { timeout: 10_000 }).toBe(1)
    expect(seed.mesh.exchange.stats.getsServed).toBe(image.manifest.cids.length)
  })

  it('fails with ChunkUnavailableError within the bounded wait when no peer holds the data, after exact bytes only', async () => {
    const seed = await startAgent()
    const image = await seedImage(seed, 6 * 64 * KiB)
    const leech = await startAgent({ bootstrap: seed.mesh.multiaddrs })
    await fullyConnected([seed, leech])
    // The seed loses chunks 3 and later: the first three arrive, then nobody has the rest.
    const lost = image.manifest.cids.slice(3)
    expect(await seed.store.collect(lost, async () => false)).toBe(lost.length)

    const got: Uint8Array[] = []
    const started = Date.now()
    await expect((async () => {
      for await (const part of leech.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1)) got.push(part)
    })()).rejects.toMatchObject({ name: 'ChunkUnavailableError' })
    const waited = Date.now() - started
    expect(waited).toBeLessThan(6_000)
    const prefix = Buffer.concat(got)
    expect(prefix.length).toBe(3 * 64 * KiB)
    expect(prefix.equals(image.bytes.subarray(0, prefix.length))).toBe(true)
  })

  it('fails with ChunkUnavailableError when the agent is alone', async () => {
    const seed = await startAgent()
    const image = await seedImage(seed, 2 * 64 * KiB)
    const alone = await startAgent()
    await expect(readAll(alone.mesh.reader.read(image.imageId, image.manifest, 0, 10))).rejects.toMatchObject({ name: 'ChunkUnavailableError' })
  })
})
