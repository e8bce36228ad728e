import { randomBytes } from 'node:crypto'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import { cidOf } from '@peerglance/interface'
import { FsChunkStore, STAGING_DIR } from '../src/index.ts'
import { CHUNK, chunksOf, pieces, stagingEntries, storedCids, freshStore } from './fixtures.ts'

describe('FsChunkStore lifecycle and collection', () => {
  const fresh = freshStore({ start: false })
  let dir: string
  let store: FsChunkStore

  beforeEach(async () => {
    ({ dir, store } = fresh)
  })

  it('names chunks as CIDv1 raw sha2-256 in base32', () => {
    // The well-known CID of the empty raw block.
    expect(cidOf(new Uint8Array(0))).toBe('bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku')
  })

  it('does no I/O until started', async () => {
    expect(await readdir(dir)).toEqual([])
    await store.start()
    expect((await readdir(dir)).sort()).toEqual(['chunks', 'staging'])
  })

  it('start() deletes what a crash left in staging and keeps stored chunks', async () => {
    await store.start()
    const data = randomBytes(2 * CHUNK)
    const result = await store.ingest(pieces(data), { maxBytes: data.length })
    await store.stop()

    await writeFile(join(dir, STAGING_DIR, 'half-written.tmp'), randomBytes(1000))
    await mkdir(join(dir, STAGING_DIR, 'odd-dir'))
    await writeFile(join(dir, STAGING_DIR, 'odd-dir', 'x'), 'x')
    await store.start()
    expect(await stagingEntries(dir)).toEqual([])
    expect(await storedCids(dir)).toEqual([...result.cids].sort())
  })

  it('answers has() for stored chunks only', async () => {
    await store.start()
    const data = randomBytes(CHUNK)
    const [cid] = (await store.ingest(pieces(data), { maxBytes: CHUNK })).cids
    expect(await store.has(cid)).toBe(true)
    expect(await store.has(cidOf(randomBytes(10)))).toBe(false)
    expect(await store.has('../../etc/passwd')).toBe(false)
  })

  it('lists every stored chunk', async () => {
    await store.start()
    const data = randomBytes(7 * CHUNK)
    const result = await store.ingest(pieces(data), { maxBytes: data.length })
    const listed: string[] = []
    for await (const cid of store.listCids()) listed.push(cid)
    expect(listed.sort()).toEqual([...result.cids].sort())
  })

  it('collect deletes unreferenced, unpinned chunks and keeps pinned and referenced ones', async () => {
    await store.start()
    const kept = randomBytes(2 * CHUNK)
    const dropped = randomBytes(3 * CHUNK)
    const pinned = randomBytes(CHUNK)
    const referenced = await store.ingest(pieces(kept), { maxBytes: kept.length })
    const orphaned = await store.ingest(pieces(dropped), { maxBytes: dropped.length })
    const unrecorded = await store.ingest(pieces(pinned), { maxBytes: pinned.length })
    store.release(referenced.cids)
    store.release(orphaned.cids)

    const asked: string[] = []
    const isReferenced = async (cid: string): Promise<boolean> => {
      asked.push(cid)
      return referenced.cids.includes(cid)
    }
    expect(await store.collect(store.listCids(), isReferenced)).toBe(3)
    expect(await storedCids(dir)).toEqual([...referenced.cids, ...unrecorded.cids].sort())
    // Pinned chunks are skipped before the (possibly costly) reference check.
    expect(asked).not.toContain(unrecorded.cids[0])
  })

  it('collect takes a plain list and ignores names that are not chunks', async () => {
    await store.start()
    const data = randomBytes(2 * CHUNK)
    const result = await store.ingest(pieces(data), { maxBytes: data.length })
    store.release(result.cids)
    const never = async (): Promise<boolean> => false
    expect(await store.collect(['not-a-cid', '../x', result.cids[0], cidOf(randomBytes(3))], never)).toBe(1)
    expect(await storedCids(dir)).toEqual([result.cids[1]])
  })

  it('release undoes each pin once, so a chunk stored by two uploads stays until both release', async () => {
    await store.start()
    const data = randomBytes(CHUNK)
    const never = async (): Promise<boolean> => false
    const one = await store.ingest(pieces(data), { maxBytes: CHUNK })
    const two = await store.ingest(pieces(data), { maxBytes: CHUNK })
    store.release(one.cids)
    expect(await store.collect(store.listCids(), never)).toBe(0)
    store.release(two.cids)
    expect(await store.collect(store.listCids(), never)).toBe(1)
  })

  it('spreads chunks over fan-out directories named by the CID', async () => {
    await store.start()
    const data = randomBytes(16 * CHUNK)
    const result = await store.ingest(pieces(data, CHUNK), { maxBytes: data.length })
    expect(result.cids).toEqual(chunksOf(data))
    for (const sub of await readdir(join(dir, 'chunks'))) {
      for (const name of await readdir(join(dir, 'chunks', sub))) expect(name.slice(-2, -1)).toBe(sub)
    }
  })
})
