import { createHash, randomBytes } from 'node:crypto'
import { constants, PerformanceObserver } from 'node:perf_hooks'
import type { NodeGCPerformanceDetail } from 'node:perf_hooks'
import { stat, unlink } from 'node:fs/promises'
import { beforeEach, describe, expect, it } from 'vitest'
import { cidOf } from '@peerglance/interface'
import type { Lease } from '@peerglance/interface'
import { FsChunkStore } from '../src/index.ts'
import { CHUNK, chunkFile, concat, manifestOf, pieces, stagingEntries, storedCids, freshStore } from './fixtures.ts'

/** Whether two leases hold the same bytes of the same memory (not compared with expect: printing a 17 MiB memory runs out of heap). */
function sameSlot (one: Lease, other: Lease): boolean {
  return one.bytes.buffer === other.bytes.buffer && one.bytes.byteOffset === other.bytes.byteOffset
}

describe('FsChunkStore single chunks (ChunkBlocks)', () => {
  const fresh = freshStore()
  let dir: string
  let store: FsChunkStore

  beforeEach(async () => {
    ({ dir, store } = fresh)
  })

  it('keeps a chunk a peer sent and reads it back byte for byte', async () => {
    const bytes = randomBytes(CHUNK)
    const cid = cidOf(bytes)
    expect(await store.has(cid)).toBe(false)
    await store.putChunk(cid, bytes)
    expect(await store.has(cid)).toBe(true)
    expect(Buffer.from(await store.readChunk(cid)).equals(bytes)).toBe(true)
    expect(await storedCids(dir)).toEqual([cid])
    expect(await stagingEntries(dir)).toEqual([])
  })

  it('leases a chunk in a slot it reuses once released, and never while leased', async () => {
    const [a, b, c] = [randomBytes(CHUNK), randomBytes(CHUNK), randomBytes(CHUNK)]
    for (const bytes of [a, b, c]) await store.putChunk(cidOf(bytes), bytes)
    const first = await store.readChunkLease(cidOf(a))
    expect(Buffer.from(first.bytes).equals(a)).toBe(true)
    // Leased: another read gets another slot and leaves the first one's bytes alone.
    const second = await store.readChunkLease(cidOf(b))
    expect(sameSlot(second, first)).toBe(false)
    expect(Buffer.from(first.bytes).equals(a)).toBe(true)
    expect(store.stats.readsLent).toBe(2)
    first.release()
    first.release()
    const third = await store.readChunkLease(cidOf(c))
    expect(sameSlot(third, first)).toBe(true)
    expect(Buffer.from(third.bytes).equals(c)).toBe(true)
    expect(Buffer.from(second.bytes).equals(b)).toBe(true)
    // Released twice, handed out once: the next lease is another slot, not the third's.
    const fourth = await store.readChunkLease(cidOf(a))
    expect(sameSlot(fourth, third)).toBe(false)
    for (const lease of [second, third, fourth]) lease.release()
    expect(store.stats).toMatchObject({ readsLent: 0, freshBuffers: 0 })
    await expect(store.readChunkLease(cidOf(randomBytes(10)))).rejects.toMatchObject({ name: 'ChunkUnavailableError' })
    expect(store.stats.readsLent).toBe(0)
  })

  it('reads the chunk files it serves around the page cache', async () => {
    const [whole, last] = [randomBytes(CHUNK), randomBytes(1000)]
    for (const bytes of [whole, last]) await store.putChunk(cidOf(bytes), bytes)
    for (const bytes of [whole, last]) {
      const lease = await store.readChunkLease(cidOf(bytes))
      expect(Buffer.from(lease.bytes).equals(bytes)).toBe(true)
      lease.release()
    }
    expect(store.stats.directReads).toBe(2)
  })

  it('leases every length up to its chunk size from one pool, and a longer chunk in a buffer nobody keeps', async () => {
    // Each image's last chunk has a length of its own; pooled per length, a member asking for the
    // last chunk of every image made the agent keep one buffer per image for good.
    const [short, shorter] = [randomBytes(CHUNK - 1000), randomBytes(1000)]
    for (const bytes of [short, shorter]) await store.putChunk(cidOf(bytes), bytes)
    const first = await store.readChunkLease(cidOf(short))
    expect(Buffer.from(first.bytes).equals(short)).toBe(true)
    first.release()
    const second = await store.readChunkLease(cidOf(shorter))
    expect(sameSlot(second, first)).toBe(true)
    expect(Buffer.from(second.bytes).equals(shorter)).toBe(true)
    second.release()
    // A chunk of an image cut with larger chunks (read with the store's own chunk size).
    const large = randomBytes(4 * CHUNK)
    const other = new FsChunkStore({ dir, chunkSize: 4 * CHUNK })
    await other.start()
    await other.putChunk(cidOf(large), large)
    await other.stop()
    const third = await store.readChunkLease(cidOf(large))
    expect(third.bytes.buffer === first.bytes.buffer).toBe(false)
    expect(Buffer.from(third.bytes).equals(large)).toBe(true)
    third.release()
    const fourth = await store.readChunkLease(cidOf(short))
    expect(sameSlot(fourth, first)).toBe(true)
    fourth.release()
    expect(store.stats.readsLent).toBe(0)
  })

  it('with every read slot out, waits for one to come back rather than read into a fresh buffer, for a while', { timeout: 20_000 }, async () => {
    const few = new FsChunkStore({ dir, chunkSize: CHUNK, readSlots: 2 })
    await few.start()
    const chunks = [randomBytes(CHUNK), randomBytes(CHUNK), randomBytes(CHUNK)]
    for (const bytes of chunks) await few.putChunk(cidOf(bytes), bytes)
    const [a, b] = [await few.readChunkLease(cidOf(chunks[0])), await few.readChunkLease(cidOf(chunks[1]))]
    let waited: Lease | undefined
    const c = few.readChunkLease(cidOf(chunks[2])).then(lease => (waited = lease))
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(waited).toBeUndefined()
    b.release()
    await c
    expect(sameSlot(waited as Lease, b)).toBe(true)
    expect(Buffer.from((waited as Lease).bytes).equals(chunks[2])).toBe(true)
    expect(Buffer.from(a.bytes).equals(chunks[0])).toBe(true)
    expect(few.stats.freshBuffers).toBe(0)
    // A holder that keeps its slot (a peer that reads nothing) stalls nobody for long: after the
    // wait, a fresh buffer.
    const t0 = performance.now()
    const d = await few.readChunkLease(cidOf(chunks[1]))
    expect(performance.now() - t0).toBeGreaterThan(1_900)
    expect(few.stats.freshBuffers).toBe(1)
    expect(Buffer.from(d.bytes).equals(chunks[1])).toBe(true)
    // No slot moved since: the next read does not wait at all.
    const t1 = performance.now()
    const e = await few.readChunkLease(cidOf(chunks[0]))
    expect(performance.now() - t1).toBeLessThan(300)
    expect(few.stats.freshBuffers).toBe(2)
    for (const lease of [a, waited as Lease, d, e]) lease.release()
    expect(few.stats.readsLent).toBe(0)
    await few.stop()
  })

  it('refuses bytes that do not hash to the CID and stores nothing', async () => {
    const bytes = randomBytes(CHUNK)
    const cid = cidOf(bytes)
    const bad = Buffer.from(bytes)
    bad[100] ^= 0xff
    await expect(store.putChunk(cid, bad)).rejects.toMatchObject({ name: 'ChunkIntegrityError' })
    await expect(store.putChunk('../../etc/passwd', bytes)).rejects.toMatchObject({ name: 'ChunkIntegrityError' })
    expect(await store.has(cid)).toBe(false)
    expect(await storedCids(dir)).toEqual([])
    expect(await stagingEntries(dir)).toEqual([])
  })

  it('takes the caller\'s word for the hash only when told it verified the bytes, and never a malformed name', async () => {
    const bytes = randomBytes(CHUNK)
    const cid = cidOf(bytes)
    await store.putChunk(cid, bytes, { verified: true })
    expect(Buffer.from(await store.readChunk(cid)).equals(bytes)).toBe(true)
    await expect(store.putChunk('../../etc/passwd', bytes, { verified: true })).rejects.toMatchObject({ name: 'ChunkIntegrityError' })
    expect(await storedCids(dir)).toEqual([cid])
  })

  it('an upload into a fan-out directory a cached chunk made first stores and reads back', async () => {
    const cached = randomBytes(CHUNK)
    await store.putChunk(cidOf(cached), cached)
    const bytes = randomBytes(3 * CHUNK)
    const result = await store.ingest(pieces(bytes, 1000), { maxBytes: bytes.length })
    expect((await concat(store.read(manifestOf(result), 0, bytes.length - 1))).equals(bytes)).toBe(true)
    expect((await storedCids(dir)).sort()).toEqual([cidOf(cached), ...result.cids].sort())
  })

  it('readChunk of an absent or malformed name fails with ChunkUnavailableError', async () => {
    await expect(store.readChunk(cidOf(randomBytes(10)))).rejects.toMatchObject({ name: 'ChunkUnavailableError' })
    await expect(store.readChunk('../x')).rejects.toMatchObject({ name: 'ChunkUnavailableError' })
  })

  it('reads chunks an upload stored, and a short last chunk at its own size', async () => {
    const data = randomBytes(2 * CHUNK + 123)
    const result = await store.ingest(pieces(data), { maxBytes: data.length })
    const parts = await Promise.all(result.cids.map(async cid => await store.readChunk(cid)))
    expect(parts.map(p => p.length)).toEqual([CHUNK, CHUNK, 123])
    expect(Buffer.concat(parts).equals(data)).toBe(true)
  })

  it('putting the same chunk concurrently writes one file, and an image of put chunks reads whole', async () => {
    const data = randomBytes(3 * CHUNK + 7)
    const chunks = [0, 1, 2, 3].map(i => data.subarray(i * CHUNK, Math.min(data.length, (i + 1) * CHUNK)))
    const cids = chunks.map(c => cidOf(c))
    await Promise.all([...chunks, ...chunks, ...chunks].map(async (c, i) => { await store.putChunk(cids[i % 4], c) }))
    expect(await storedCids(dir)).toEqual([...cids].sort())
    expect(await stagingEntries(dir)).toEqual([])
    const manifest = manifestOf({ size: data.length, chunkSize: CHUNK, cids, md5: '', sha512: '', head: new Uint8Array() })
    expect((await concat(store.read(manifest, 0, data.length - 1))).equals(data)).toBe(true)
  })

  it('putChunk after stop fails with ShuttingDownError', async () => {
    await store.stop()
    const bytes = randomBytes(100)
    await expect(store.putChunk(cidOf(bytes), bytes)).rejects.toMatchObject({ name: 'ShuttingDownError' })
  })

  it('honours an aborted signal', async () => {
    const bytes = randomBytes(100)
    const signal = AbortSignal.abort()
    await expect(store.putChunk(cidOf(bytes), bytes, { signal })).rejects.toMatchObject({ name: 'AbortedError' })
    await expect(store.readChunk(cidOf(bytes), { signal })).rejects.toMatchObject({ name: 'AbortedError' })
  })

  it('lends receive buffers it writes around the page cache, reuses each once released, and lends fresh ones beyond', async () => {
    const one = randomBytes(CHUNK)
    const lease = store.lendBuffer(CHUNK)
    lease.bytes.set(one)
    expect(store.stats.buffersLent).toBe(1)
    await store.putChunk(cidOf(one), lease.bytes, { verified: true })
    expect(store.stats.directWrites).toBe(1)
    expect(Buffer.from(await store.readChunk(cidOf(one))).equals(one)).toBe(true)
    const buffer = lease.bytes.buffer
    lease.release()
    lease.release()
    expect(store.stats.buffersLent).toBe(0)
    const again = store.lendBuffer(CHUNK)
    expect(again.bytes.buffer).toBe(buffer)
    expect(again.bytes.byteOffset).toBe(lease.bytes.byteOffset)
    again.release()
    // Bytes in a buffer of the caller's own go through the page cache, as before.
    const two = randomBytes(CHUNK)
    await store.putChunk(cidOf(two), two)
    expect(store.stats.directWrites).toBe(1)
    // Longer than a chunk of this store, or with every slot out: a fresh buffer, not a slot.
    const long = store.lendBuffer(CHUNK + 1)
    expect(long.bytes.byteLength).toBe(CHUNK + 1)
    expect(long.bytes.buffer).not.toBe(buffer)
    const slots = Array.from({ length: 1000 }, () => store.lendBuffer(CHUNK))
    expect(slots.filter(l => l.bytes.buffer === buffer).length).toBe(store.stats.buffersLent)
    expect(slots.some(l => l.bytes.buffer !== buffer)).toBe(true)
    for (const l of [long, ...slots]) l.release()
    expect(store.stats.buffersLent).toBe(0)
  })

  it('hashes a lent receive buffer on a worker that reads it in place, rightly, and a fresh buffer not at all', async () => {
    const lease = store.lendBuffer(CHUNK)
    expect(lease.bytes.buffer).toBeInstanceOf(SharedArrayBuffer)
    const bytes = randomBytes(CHUNK)
    lease.bytes.set(bytes)
    const digest = await lease.sha256?.()
    expect(Buffer.from(digest ?? []).toString('hex')).toBe(createHash('sha256').update(bytes).digest('hex'))
    expect(store.stats.workerDigests).toBe(1)
    // Digests asked at once are each the digest of their own bytes.
    const more = Array.from({ length: 6 }, () => store.lendBuffer(CHUNK))
    for (const l of more) l.bytes.set(randomBytes(CHUNK))
    const digests = await Promise.all(more.map(async l => Buffer.from(await l.sha256?.() ?? []).toString('hex')))
    expect(digests).toEqual(more.map(l => createHash('sha256').update(l.bytes).digest('hex')))
    expect(store.stats.workerDigests).toBe(7)
    // Bytes outside the slots (longer than a chunk) are hashed by the caller, as they arrive.
    const long = store.lendBuffer(CHUNK + 1)
    expect(long.sha256).toBeUndefined()
    // A store stopped (its worker ended) and started again still answers rightly.
    await store.stop()
    await store.start()
    expect(Buffer.from(await lease.sha256?.() ?? []).toString('hex')).toBe(createHash('sha256').update(bytes).digest('hex'))
    for (const l of [lease, long, ...more]) l.release()
  })

  it('keeps its slot memories out of V8\'s external memory, whose jumps start full collections', async () => {
    const bytes = randomBytes(CHUNK)
    await store.putChunk(cidOf(bytes), bytes)
    const before = process.memoryUsage().external
    // Made on first use: 24 MiB of receive slots, 17 MiB of read slots.
    const lent = store.lendBuffer(CHUNK)
    const read = await store.readChunkLease(cidOf(bytes))
    expect(Buffer.from(read.bytes).equals(bytes)).toBe(true)
    expect(process.memoryUsage().external - before).toBeLessThan(1024 * 1024)
    lent.release()
    read.release()
  })

  it('scavenges after every 8 MiB put from the caller\'s own buffers, never for chunks received into its slots', async () => {
    // A forced scavenge per 8 MiB was there for what died around received chunks (a fresh buffer per
    // socket read); chunks in the slots leave none, and V8's own scavenges do (swarm: 32 forced per
    // 256 MiB besides V8's ~10; without them, main thread -7 %).
    const forced: number[] = []
    const observer = new PerformanceObserver(list => {
      for (const e of list.getEntries()) {
        const { kind, flags } = (e as unknown as { detail: NodeGCPerformanceDetail }).detail
        if (kind === constants.NODE_PERFORMANCE_GC_MINOR && (flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0) forced.push(e.startTime)
      }
    })
    observer.observe({ entryTypes: ['gc'] })
    try {
      const count = 2 * 8 * 1024 * 1024 / CHUNK
      for (let i = 0; i < count; i++) {
        const lease = store.lendBuffer(CHUNK)
        lease.bytes.set(randomBytes(CHUNK))
        await store.putChunk(cidOf(lease.bytes), lease.bytes)
        lease.release()
      }
      await new Promise(resolve => setTimeout(resolve, 50))
      expect(forced).toEqual([])
      for (let i = 0; i < count; i++) {
        const bytes = randomBytes(CHUNK)
        await store.putChunk(cidOf(bytes), bytes)
      }
      await new Promise(resolve => setTimeout(resolve, 50))
      expect(forced.length).toBeGreaterThanOrEqual(1)
    } finally {
      observer.disconnect()
    }
  })

  it('knows what it holds from its listing at start, its puts and its deletes', async () => {
    const [a, b] = [randomBytes(CHUNK), randomBytes(CHUNK)]
    await store.putChunk(cidOf(a), a)
    await store.putChunk(cidOf(b), b)
    await store.stop()
    const again = new FsChunkStore({ dir, chunkSize: CHUNK })
    await again.start()
    expect(await again.has(cidOf(a))).toBe(true)
    expect(await again.has(cidOf(b))).toBe(true)
    expect(await again.collect([cidOf(a)], async () => false)).toBe(1)
    expect(await again.has(cidOf(a))).toBe(false)
    expect(await again.has(cidOf(b))).toBe(true)
    await again.stop()
  })

  it('putChunk of a chunk already here writes nothing', async () => {
    const bytes = randomBytes(CHUNK)
    const cid = cidOf(bytes)
    await store.putChunk(cid, bytes)
    const file = chunkFile(dir, cid)
    const before = await stat(file)
    const { generation, bytesStored } = store
    const lease = store.lendBuffer(CHUNK)
    lease.bytes.set(bytes)
    await store.putChunk(cid, lease.bytes, { verified: true })
    await store.putChunk(cid, bytes)
    lease.release()
    const after = await stat(file)
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs])
    expect([store.generation, store.bytesStored, store.stats.directWrites]).toEqual([generation, bytesStored, 0])
    expect(await stagingEntries(dir)).toEqual([])
  })

  it('forgets a chunk whose file went behind its back once a read misses it, and writes it again', async () => {
    const bytes = randomBytes(CHUNK)
    const cid = cidOf(bytes)
    await store.putChunk(cid, bytes)
    await unlink(chunkFile(dir, cid))
    const generation = store.generation
    await expect(store.readChunk(cid)).rejects.toMatchObject({ name: 'ChunkUnavailableError' })
    expect(await store.has(cid)).toBe(false)
    expect(store.generation).toBeGreaterThan(generation)
    await store.putChunk(cid, bytes)
    expect(Buffer.from(await store.readChunk(cid)).equals(bytes)).toBe(true)
  })
})
