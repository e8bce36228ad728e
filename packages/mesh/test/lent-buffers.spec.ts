import { afterEach, describe, expect, it } from 'vitest'
import { cleanup, fullyConnected, KiB, readAll, seedImage, sha512, startAgent, until } from './fixtures.ts'
import { leaseRef, plainRef, shareLease } from '../src/chunk-ref.ts'

const CHUNK = 64 * KiB

/**
 * Chunks from peers are received into a few buffers the store lends and reuses (chunk-slots.ts),
 * shared by the write to the store and the readers streaming them (chunk-ref.ts).
 */
describe('chunks received into lent buffers', () => {
  afterEach(cleanup)

  it('a reader holding two chunks, as the contract allows, never sees a reused buffer\'s new contents; every buffer comes back', async () => {
    const seed = await startAgent()
    const image = await seedImage(seed, 48 * CHUNK + 1000)
    // Four buffers for 16 fetches in flight: each is reused many times over during the read.
    // Verified on the store's hash worker, as when the main thread is busy.
    const leech = await startAgent({ bootstrap: seed.mesh.multiaddrs, receiveSlots: 4, init: { hashOffThread: 'always' } })
    await fullyConnected([seed, leech])
    const { manifest } = image
    const expected = (i: number): Buffer => image.bytes.subarray(i * CHUNK, Math.min((i + 1) * CHUNK, manifest.size))

    let checked = 0
    const held: Uint8Array[] = []
    for await (const part of leech.mesh.reader.read(image.imageId, manifest, 0, manifest.size - 1)) {
      held.push(part)
      if (held.length > 2) held.shift()
      // The consumer still holds the chunk before this one (not a copy): both must be intact.
      // Slowly, so the fetches running ahead of the reader reuse the buffers meanwhile.
      await new Promise(resolve => setTimeout(resolve, 5))
      const index = checked++
      expect(Buffer.from(part).equals(expected(index)), `chunk ${index}`).toBe(true)
      if (held.length === 2) expect(Buffer.from(held[0]).equals(expected(index - 1)), `chunk ${index - 1}, held`).toBe(true)
    }
    expect(checked).toBe(manifest.cids.length)
    await until(() => leech.mesh.swarm.sessions()[0]?.complete === true, 10_000, 'the download')
    // Written from the lent buffers around the page cache, more chunks than there are buffers:
    // they were reused (the others came in fresh buffers while all four were out).
    expect(leech.store.stats.directWrites).toBeGreaterThan(4)
    // And verified there by the store's hash worker, not on the main thread.
    expect(leech.store.stats.workerDigests).toBeGreaterThanOrEqual(leech.store.stats.directWrites)
    await until(() => leech.store.stats.buffersLent === 0, 5_000, 'every lent buffer back')
    expect(sha512(await readAll(leech.mesh.reader.read(image.imageId, manifest, 0, manifest.size - 1)))).toBe(sha512(image.bytes))
  })

  it('a reader that stops early, or is aborted, gives back every buffer it held or waited for', async () => {
    const seed = await startAgent()
    const image = await seedImage(seed, 40 * CHUNK)
    const leech = await startAgent({ bootstrap: seed.mesh.multiaddrs, receiveSlots: 4 })
    await fullyConnected([seed, leech])
    const { manifest } = image
    let n = 0
    for await (const part of leech.mesh.reader.read(image.imageId, manifest, 0, manifest.size - 1)) {
      expect(Buffer.from(part).equals(image.bytes.subarray(n * CHUNK, (n + 1) * CHUNK))).toBe(true)
      if (++n === 3) break
    }
    const aborting = new AbortController()
    const second = leech.mesh.reader.read(image.imageId, manifest, 0, manifest.size - 1, { signal: aborting.signal })
    const outcome = (async () => {
      for await (const _ of second) aborting.abort(new Error('client went away'))
    })()
    await expect(outcome).rejects.toMatchObject({ name: 'AbortedError' })
    await until(() => leech.mesh.swarm.sessions()[0]?.complete === true, 10_000, 'the background download')
    await until(() => leech.store.stats.buffersLent === 0, 5_000, 'every lent buffer back')
    expect(sha512(await readAll(leech.mesh.reader.read(image.imageId, manifest, 0, manifest.size - 1)))).toBe(sha512(image.bytes))
  })
})

describe('chunk references', () => {
  function lease (): { bytes: Uint8Array, release: () => void, released: number } {
    const l = { bytes: new Uint8Array([1, 2, 3]), released: 0, release: () => { l.released++ } }
    return l
  }

  it('a shared lease goes back once, when the last of its holders lets go, and not before', () => {
    const l = lease()
    const take = shareLease(l, 2)
    const a = take()
    const b = take()
    expect(() => take()).toThrow()
    const c = a.hold()
    a.release()
    a.release()
    b.release()
    expect(l.released).toBe(0)
    expect(c.bytes[0]).toBe(1)
    c.release()
    expect(l.released).toBe(1)
  })

  it('bytes read through a released reference throw instead of showing the reused buffer', () => {
    const l = lease()
    const ref = leaseRef(l)
    const other = ref.hold()
    ref.release()
    expect(() => ref.bytes).toThrow()
    expect(() => ref.hold()).toThrow()
    expect(other.bytes[2]).toBe(3)
    other.release()
    expect(l.released).toBe(1)
    // Bytes nobody reuses stay readable.
    const plain = plainRef(new Uint8Array([9]))
    plain.release()
    expect(plain.bytes[0]).toBe(9)
  })
})
