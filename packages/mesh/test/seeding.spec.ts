import { afterEach, describe, expect, it } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import { cleanup, fullyConnected, MiB, readAll, seedImage, sha512, startAgent } from './fixtures.ts'

/**
 * The defaults for everything seeding depends on: fixtures.ts shortens them for failure tests, and
 * with those (a 3 s request timeout) a starved run re-asked a whole window of 8 requests that had
 * been answered late (the late joiner's holder served 72 GETs for 64 chunks).
 */
const seedingInit = { urgentFallbackMs: 5_000, backgroundFallbackMs: 15_000, startGraceMs: 100, requestTimeoutMs: 15_000, unavailableTimeoutMs: 10_000 }

describe('seeding', () => {
  afterEach(cleanup)

  it('an image read by four agents at once leaves the seed having sent about one copy', { timeout: 120_000 }, async () => {
    const seed = await startAgent({ chunkSize: MiB, init: seedingInit })
    const image = await seedImage(seed, 64 * MiB)
    const downloaders = await Promise.all([0, 1, 2, 3].map(async () => await startAgent({ chunkSize: MiB, bootstrap: seed.mesh.multiaddrs, init: seedingInit })))
    await fullyConnected([seed, ...downloaders], 15_000)

    const started = Date.now()
    const results = await Promise.all(downloaders.map(async d => await readAll(d.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))))
    const seconds = (Date.now() - started) / 1000
    for (const got of results) expect(sha512(got)).toBe(sha512(image.bytes))
    for (const d of downloaders) await expect.poll(async () => await d.mesh.localShare(image.manifest), { timeout: 30_000 }).toBe(1)

    const sent = seed.mesh.metrics.totals.bytesSent
    const ratio = sent / image.manifest.size
    const reasons: Record<string, number> = {}
    for (const d of downloaders) for (const [k, v] of Object.entries(d.mesh.swarm.fetchReasons)) reasons[k] = (reasons[k] ?? 0) + v
    console.log(`seed sent ${(sent / MiB).toFixed(1)} MiB for a ${(image.manifest.size / MiB).toFixed(0)} MiB image (${ratio.toFixed(3)} copies); reads took ${seconds.toFixed(1)} s; downloaders sent ${downloaders.map(d => (d.mesh.metrics.totals.bytesSent / MiB).toFixed(0)).join(', ')} MiB; fetches ${JSON.stringify(reasons)}`)
    expect(ratio).toBeLessThanOrEqual(1.25)
  })

  it('a seed refuses a chunk it just sent another downloader as "sent elsewhere", not "not held"', { timeout: 60_000 }, async () => {
    const seed = await startAgent({ chunkSize: 256 * 1024, init: seedingInit })
    const image = await seedImage(seed, MiB)
    const [a, b] = await Promise.all([0, 1].map(async () => await startAgent({ chunkSize: 256 * 1024, bootstrap: seed.mesh.multiaddrs, init: seedingInit })))
    await fullyConnected([seed, a, b])
    const cid = image.manifest.cids[0]
    const first = await a.mesh.exchange.get(peerIdFromString(seed.mesh.peerId), cid, { once: true })
    expect(sha512(first)).toBe(sha512(image.bytes.subarray(0, 256 * 1024)))
    // The seed holds it: b must keep it as a holder (and wait for a's ANNOUNCE), not forget it.
    await expect(b.mesh.exchange.get(peerIdFromString(seed.mesh.peerId), cid, { once: true })).rejects.toMatchObject({ name: 'SentElsewhereError' })
    expect(seed.mesh.exchange.stats.refusedOnce).toBe(1)
    // Without the first-fetch flag (another agent's read, not a downloader's first fetch) it is served.
    expect(sha512(await b.mesh.exchange.get(peerIdFromString(seed.mesh.peerId), cid))).toBe(sha512(first))
  })

  it('a late joiner takes the image from an agent that already downloaded it, not from the seed', { timeout: 60_000 }, async () => {
    const seed = await startAgent({ chunkSize: 256 * 1024, init: seedingInit })
    const image = await seedImage(seed, 16 * MiB)
    const first = await startAgent({ chunkSize: 256 * 1024, bootstrap: seed.mesh.multiaddrs, init: seedingInit })
    await fullyConnected([seed, first])
    await readAll(first.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
    await expect.poll(async () => await first.mesh.localShare(image.manifest), { timeout: 20_000 }).toBe(1)
    const seedServed = seed.mesh.exchange.stats.getsServed

    const late = await startAgent({ chunkSize: 256 * 1024, bootstrap: seed.mesh.multiaddrs, init: seedingInit })
    await fullyConnected([seed, first, late])
    const got = await readAll(late.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
    expect(sha512(got)).toBe(sha512(image.bytes))
    await expect.poll(async () => await late.mesh.localShare(image.manifest), { timeout: 20_000 }).toBe(1)
    expect(seed.mesh.exchange.stats.getsServed).toBe(seedServed)
    expect(first.mesh.exchange.stats.getsServed).toBe(image.manifest.cids.length)
  })
})
