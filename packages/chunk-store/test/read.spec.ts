import { randomBytes } from 'node:crypto'
import { unlink } from 'node:fs/promises'
import { beforeEach, describe, expect, it } from 'vitest'
import type { Manifest } from '@peerglance/interface'
import { FsChunkStore } from '../src/index.ts'
import { CHUNK, chunkFile, concat, manifestOf, pieces, freshStore } from './fixtures.ts'

describe('FsChunkStore read', () => {
  const fresh = freshStore()
  let dir: string
  let store: FsChunkStore
  let data: Buffer
  let manifest: Manifest

  beforeEach(async () => {
    ({ dir, store } = fresh)
    data = randomBytes(5.5 * CHUNK)
    manifest = manifestOf(await store.ingest(pieces(data), { maxBytes: data.length }))
  })

  const last = 5.5 * CHUNK - 1
  it.each([
    [0, 0],
    [0, CHUNK - 1],
    [CHUNK - 1, CHUNK - 1],
    [CHUNK - 1, CHUNK],
    [CHUNK, 2 * CHUNK - 1],
    [CHUNK, CHUNK],
    [2 * CHUNK + 5, 4 * CHUNK + 7],
    [5 * CHUNK, last],
    [last, last],
    [1, last - 1],
    [0, last]
  ])('returns exactly bytes %i-%i', async (start, end) => {
    const bytes = await concat(store.read(manifest, start, end))
    expect(bytes.equals(data.subarray(start, end + 1))).toBe(true)
  })

  it('yields one buffer per chunk touched', async () => {
    const sizes: number[] = []
    for await (const part of store.read(manifest, CHUNK - 1, 3 * CHUNK)) sizes.push(part.length)
    expect(sizes).toEqual([1, CHUNK, CHUNK, 1])
  })

  it('returns nothing for an empty range, as an empty image needs', async () => {
    expect(await concat(store.read(manifest, 0, -1))).toHaveLength(0)
    const empty = manifestOf(await store.ingest(pieces(new Uint8Array(0)), { maxBytes: 0 }))
    expect(await concat(store.read(empty, 0, -1))).toHaveLength(0)
  })

  it('fails a range past the end with RangeNotSatisfiableError', async () => {
    await expect(concat(store.read(manifest, 0, data.length))).rejects.toMatchObject({ name: 'RangeNotSatisfiableError' })
    await expect(concat(store.read(manifest, -1, 10))).rejects.toMatchObject({ name: 'RangeNotSatisfiableError' })
  })

  it("follows the manifest's chunk size, not the store's", async () => {
    const other = new FsChunkStore({ dir, chunkSize: CHUNK / 4 })
    await other.start()
    const small = manifestOf(await other.ingest(pieces(data), { maxBytes: data.length }))
    await other.stop()
    expect(small.cids).toHaveLength(22)
    expect((await concat(store.read(small, CHUNK - 3, 3 * CHUNK + 3))).equals(data.subarray(CHUNK - 3, 3 * CHUNK + 4))).toBe(true)
  })

  it('fails with ChunkUnavailableError naming a chunk whose file is gone', async () => {
    const gone = manifest.cids[3]
    await unlink(chunkFile(dir, gone))
    const parts: Uint8Array[] = []
    const err = await (async () => { for await (const part of store.read(manifest, 0, data.length - 1)) parts.push(part) })().catch(err => err)
    expect(err).toMatchObject({ name: 'ChunkUnavailableError', message: expect.stringContaining(gone) })
    expect(parts).toHaveLength(3)
    expect(await store.has(gone)).toBe(false)
    expect(await store.has(manifest.cids[2])).toBe(true)
  })

  it('lets a reader stop early, even with a missing chunk right ahead', async () => {
    const gone = manifest.cids[1]
    await unlink(chunkFile(dir, gone))
    for await (const part of store.read(manifest, 0, data.length - 1)) {
      expect(part).toHaveLength(CHUNK)
      break
    }
    // Give the abandoned read-ahead time to fail: it must not surface as an unhandled rejection.
    await new Promise(resolve => setTimeout(resolve, 20))
  })

  it('fails with AbortedError once the signal fires', async () => {
    const controller = new AbortController()
    const parts: Uint8Array[] = []
    const err = await (async () => {
      for await (const part of store.read(manifest, 0, data.length - 1, { signal: controller.signal })) {
        parts.push(part)
        controller.abort()
      }
    })().catch(err => err)
    expect(err).toMatchObject({ name: 'AbortedError' })
    expect(parts).toHaveLength(1)
  })
})
