import { randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import { CHUNKS_DIR, FsChunkStore, HEAD_SIZE } from '../src/index.ts'
import { brokenAfter, CHUNK, chunksOf, concat, digest, manifestOf, pieces, stagingEntries, stalledAfter, storedCids, freshStore } from './fixtures.ts'

const never = async (): Promise<boolean> => false

function countFilesSync (root: string): number {
  return readdirSync(root).reduce((sum, sub) => sum + readdirSync(join(root, sub)).length, 0)
}

describe('FsChunkStore ingest', () => {
  const fresh = freshStore()
  let dir: string
  let store: FsChunkStore

  beforeEach(async () => {
    ({ dir, store } = fresh)
  })

  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5.5 * CHUNK]) {
    it(`stores and returns ${size} bytes unchanged, with Glance's digests`, async () => {
      const data = randomBytes(size)
      const result = await store.ingest(pieces(data), { maxBytes: 10 * CHUNK, expectedSize: size })

      expect(result.size).toBe(size)
      expect(result.chunkSize).toBe(CHUNK)
      expect(result.cids).toEqual(chunksOf(data))
      expect(result.md5).toBe(digest('md5', data))
      expect(result.sha512).toBe(digest('sha512', data))
      expect(Buffer.from(result.head).equals(data.subarray(0, HEAD_SIZE))).toBe(true)
      expect(await storedCids(dir)).toEqual([...new Set(result.cids)].sort())
      expect((await concat(store.read(manifestOf(result), 0, size - 1))).equals(data)).toBe(true)
    })
  }

  it('splits pieces larger than a chunk and accepts empty pieces', async () => {
    const data = randomBytes(3 * CHUNK + 7)
    async function * source (): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(0)
      yield data.subarray(0, 2 * CHUNK + 3)
      yield new Uint8Array(0)
      yield data.subarray(2 * CHUNK + 3)
    }
    const result = await store.ingest(source(), { maxBytes: data.length })
    expect(result.cids).toEqual(chunksOf(data))
    expect((await concat(store.read(manifestOf(result), 0, data.length - 1))).equals(data)).toBe(true)
  })

  it('with hashWhole: false, stores the chunks under their CIDs and leaves the whole-stream digests empty', async () => {
    const data = randomBytes(3 * CHUNK + 7)
    const result = await store.ingest(pieces(data), { maxBytes: data.length, expectedSize: data.length, hashWhole: false })
    expect(result.cids).toEqual(chunksOf(data))
    expect(result).toMatchObject({ size: data.length, md5: '', sha512: '' })
    expect((await concat(store.read(manifestOf(result), 0, data.length - 1))).equals(data)).toBe(true)
  })

  it('stores identical chunks once and lists them in order', async () => {
    const [a, b] = [randomBytes(CHUNK), randomBytes(CHUNK)]
    const data = Buffer.concat([a, a, b, a])
    const result = await store.ingest(pieces(data), { maxBytes: data.length })

    expect(result.cids).toEqual(chunksOf(data))
    expect(result.cids[0]).toBe(result.cids[1])
    expect(await storedCids(dir)).toHaveLength(2)

    const again = await store.ingest(pieces(data), { maxBytes: data.length })
    expect(again.cids).toEqual(result.cids)
    expect(await storedCids(dir)).toHaveLength(2)
  })

  it('keeps the chunks of two identical uploads running at once', async () => {
    const data = randomBytes(4 * CHUNK)
    const [one, two] = await Promise.all([
      store.ingest(pieces(data), { maxBytes: data.length }),
      store.ingest(pieces(data), { maxBytes: data.length })
    ])
    expect(one.cids).toEqual(two.cids)
    expect(await storedCids(dir)).toEqual([...one.cids].sort())
  })

  it('fails an image over maxBytes with ImageTooLargeError and keeps none of it', async () => {
    const data = randomBytes(4 * CHUNK)
    await expect(store.ingest(pieces(data), { maxBytes: 3 * CHUNK + 1 })).rejects.toMatchObject({ name: 'ImageTooLargeError' })
    expect(await storedCids(dir)).toEqual([])
    expect(await stagingEntries(dir)).toEqual([])
  })

  it('fails at once when the declared size is over maxBytes', async () => {
    let pulled = 0
    async function * source (): AsyncGenerator<Uint8Array> {
      pulled++
      yield randomBytes(10)
    }
    await expect(store.ingest(source(), { maxBytes: 100, expectedSize: 101 })).rejects.toMatchObject({ name: 'ImageTooLargeError' })
    expect(pulled).toBe(0)
  })

  it.each([
    ['fewer', 3 * CHUNK + 10],
    ['more', 3 * CHUNK - 10]
  ])('fails with ValidationError when %s bytes arrive than declared, and keeps none of them', async (_, expectedSize) => {
    const data = randomBytes(3 * CHUNK)
    await expect(store.ingest(pieces(data), { maxBytes: 10 * CHUNK, expectedSize }))
      .rejects.toMatchObject({ name: 'ValidationError', message: expect.stringContaining(`expected size (${expectedSize})`) })
    expect(await storedCids(dir)).toEqual([])
    expect(await stagingEntries(dir)).toEqual([])
  })

  it('fails with AbortedError when the source breaks midway, and keeps none of it', async () => {
    const err = await store.ingest(brokenAfter(randomBytes(3.5 * CHUNK)), { maxBytes: 10 * CHUNK }).catch(err => err)
    expect(err).toMatchObject({ name: 'AbortedError', cause: { code: 'ECONNRESET' } })
    expect(await storedCids(dir)).toEqual([])
    expect(await stagingEntries(dir)).toEqual([])
  })

  it('passes on errors the source raises on purpose', async () => {
    const { InvalidImageDataError } = await import('@peerglance/interface')
    async function * source (): AsyncGenerator<Uint8Array> {
      yield randomBytes(2 * CHUNK)
      throw new InvalidImageDataError('not a qcow2 image')
    }
    await expect(store.ingest(source(), { maxBytes: 10 * CHUNK })).rejects.toMatchObject({ name: 'InvalidImageDataError' })
    expect(await storedCids(dir)).toEqual([])
  })

  it('fails with AbortedError when the signal fires while the source stalls, and keeps none of it', async () => {
    const controller = new AbortController()
    const upload = store.ingest(stalledAfter(randomBytes(3.5 * CHUNK), () => { setTimeout(() => { controller.abort() }, 10) }), {
      maxBytes: 10 * CHUNK,
      signal: controller.signal
    })
    await expect(upload).rejects.toMatchObject({ name: 'AbortedError' })
    expect(await storedCids(dir)).toEqual([])
    expect(await stagingEntries(dir)).toEqual([])
  })

  it('fails with AbortedError at once when the signal already fired', async () => {
    await expect(store.ingest(pieces(randomBytes(10)), { maxBytes: 100, signal: AbortSignal.abort() }))
      .rejects.toMatchObject({ name: 'AbortedError' })
  })

  it('keeps a chunk stored before when an upload that contains it fails', async () => {
    const [a, b] = [randomBytes(CHUNK), randomBytes(CHUNK)]
    const earlier = await store.ingest(pieces(a), { maxBytes: CHUNK })
    store.release(earlier.cids)

    await expect(store.ingest(brokenAfter(Buffer.concat([b, a])), { maxBytes: 10 * CHUNK })).rejects.toMatchObject({ name: 'AbortedError' })
    expect(await storedCids(dir)).toEqual(earlier.cids)
  })

  it('keeps a chunk that a concurrent upload also holds when the other upload fails', async () => {
    const [a, b, c] = [randomBytes(CHUNK), randomBytes(CHUNK), randomBytes(CHUNK)]
    const { promise: aSent, resolve } = Promise.withResolvers<void>()
    const { promise: goOn, resolve: letGo } = Promise.withResolvers<void>()
    async function * slow (): AsyncGenerator<Uint8Array> {
      yield a
      resolve() // The store asks for more only after it has taken chunk a.
      await goOn
      yield b
    }
    const surviving = store.ingest(slow(), { maxBytes: 10 * CHUNK })
    await aSent
    await expect(store.ingest(brokenAfter(Buffer.concat([c, a])), { maxBytes: 10 * CHUNK })).rejects.toMatchObject({ name: 'AbortedError' })
    letGo()
    const result = await surviving
    expect(result.cids).toEqual(chunksOf(Buffer.concat([a, b])))
    expect(await storedCids(dir)).toEqual([...result.cids].sort())
    expect((await concat(store.read(manifestOf(result), 0, result.size - 1))).equals(Buffer.concat([a, b]))).toBe(true)
  })

  it('pins what it stored until release, so collection spares an unrecorded upload', async () => {
    const data = randomBytes(2 * CHUNK)
    const result = await store.ingest(pieces(data), { maxBytes: data.length })
    expect(await store.collect(store.listCids(), never)).toBe(0)
    store.release(result.cids)
    expect(await store.collect(store.listCids(), never)).toBe(2)
    expect(await storedCids(dir)).toEqual([])
  })

  it('reads the source no further ahead than writeConcurrency unwritten chunks', async () => {
    const writeConcurrency = 2
    const throttled = new FsChunkStore({ dir: join(dir, 'throttled'), chunkSize: CHUNK, writeConcurrency })
    await throttled.start()
    const data = randomBytes(20 * CHUNK)
    let pulled = 0
    let mostUnwritten = 0
    async function * watched (): AsyncGenerator<Uint8Array> {
      for (let offset = 0; offset < data.length; offset += CHUNK / 4) {
        // Counted synchronously, so no write can be acknowledged while we look.
        const unwritten = Math.floor(pulled / CHUNK) - countFilesSync(join(dir, 'throttled', CHUNKS_DIR))
        mostUnwritten = Math.max(mostUnwritten, unwritten)
        pulled += CHUNK / 4
        yield data.subarray(offset, offset + CHUNK / 4)
      }
    }
    try {
      const result = await throttled.ingest(watched(), { maxBytes: data.length })
      expect(result.cids).toEqual(chunksOf(data))
      expect(mostUnwritten).toBeLessThanOrEqual(writeConcurrency)
    } finally {
      await throttled.stop()
    }
  })

  it('ends uploads in flight with ShuttingDownError when the store stops, and keeps none of them', async () => {
    const upload = store.ingest(stalledAfter(randomBytes(2.5 * CHUNK)), { maxBytes: 10 * CHUNK })
    const outcome = upload.catch((err: unknown) => err)
    await new Promise(resolve => setTimeout(resolve, 20))
    await store.stop()
    expect(await outcome).toMatchObject({ name: 'ShuttingDownError' })
    expect(await storedCids(dir)).toEqual([])
    expect(await stagingEntries(dir)).toEqual([])
  })

  it('refuses uploads while stopped and accepts them again after a restart', async () => {
    await store.stop()
    await store.stop()
    await expect(store.ingest(pieces(randomBytes(10)), { maxBytes: 100 })).rejects.toMatchObject({ name: 'ShuttingDownError' })
    await store.start()
    await store.start()
    const result = await store.ingest(pieces(randomBytes(10)), { maxBytes: 100 })
    expect(result.size).toBe(10)
  })
})
