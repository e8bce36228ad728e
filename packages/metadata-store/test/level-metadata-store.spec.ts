import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { ImageRecord, Manifest } from '@peerglance/interface'
import { LevelMetadataStore } from '../src/index.ts'

let dir: string
let store: LevelMetadataStore

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'metadata-store-'))
  store = new LevelMetadataStore({ path: join(dir, 'db') })
  await store.start()
})
afterEach(async () => {
  await store.stop()
  await rm(dir, { recursive: true, force: true })
})

function image (id: string, over: Partial<ImageRecord> = {}): ImageRecord {
  return {
    id, name: id, status: 'queued', visibility: 'shared', protected: false, os_hidden: false, owner: 'p', checksum: null,
    os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, container_format: 'bare', disk_format: 'raw',
    min_ram: 0, min_disk: 0, tags: [], created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z', properties: {}, ...over
  }
}
const manifest = (cids: string[]): Manifest => ({ size: cids.length, chunkSize: 1, cids, md5: 'm', sha512: 's', staged: false })

async function reopen (): Promise<void> {
  await store.stop()
  store = new LevelMetadataStore({ path: join(dir, 'db') })
  await store.start()
}

describe('LevelMetadataStore', () => {
  it('keeps images, members and tasks across a restart', async () => {
    await store.putImage(image('a', { tags: ['t'] }))
    await store.putMember({ image_id: 'a', member_id: 'bob', status: 'pending', created_at: 'c', updated_at: 'u' })
    await store.putTask({ id: 't1', type: 'api_image_import', status: 'success', owner: 'p', image_id: 'a', request_id: null, user_id: null, input: {}, result: null, message: '', created_at: 'c', updated_at: 'u', expires_at: null })
    await reopen()
    expect(store.getImage('a')?.tags).toEqual(['t'])
    expect(store.members('a').map(m => m.member_id)).toEqual(['bob'])
    expect(store.tasks('a').map(t => t.id)).toEqual(['t1'])
    await store.deleteMember('a', 'bob')
    await reopen()
    expect(store.members('a')).toEqual([])
  })

  it('shows a write to readers before it reaches disk, and applies writes in call order', async () => {
    const writes = [store.putImage(image('a', { name: 'one' })), store.putImage(image('a', { name: 'two' }))]
    expect(store.getImage('a')?.name).toBe('two')
    await Promise.all(writes)
    await reopen()
    expect(store.getImage('a')?.name).toBe('two')
  })

  it('records data atomically and reports chunks no image refers to any more', async () => {
    await store.dataAdded(image('a', { status: 'active' }), manifest(['c1', 'c2', 'c2']))
    await store.dataAdded(image('b', { status: 'active' }), manifest(['c2', 'c3']))
    await reopen()
    expect((await store.getManifest('a'))?.cids).toEqual(['c1', 'c2', 'c2'])
    expect(await store.isReferenced('c1')).toBe(true)
    const orphans = await store.dataRemoved(image('a', { status: 'deleted' }))
    expect(orphans).toEqual(['c1'])
    expect(await store.isReferenced('c1')).toBe(false)
    expect(await store.isReferenced('c2')).toBe(true)
    expect(await store.getManifest('a')).toBeUndefined()
    expect(store.getImage('a')?.status).toBe('deleted')
    const all = []
    for await (const cid of store.referencedCids()) all.push(cid)
    expect(all).toEqual(['c2', 'c3'])
  })

  it('does not mistake a CID that is a prefix of another for a referenced one', async () => {
    await store.dataAdded(image('a'), manifest(['abc1']))
    expect(await store.isReferenced('abc')).toBe(false)
    expect(await store.isReferenced('abc1')).toBe(true)
  })

  it('names the image of chunk after chunk without a range query each, and forgets what a changed manifest named', async () => {
    const cids = Array.from({ length: 100 }, (_, i) => `c${i}`)
    await store.dataAdded(image('a', { status: 'active' }), manifest(cids))
    await store.dataAdded(image('b', { status: 'active' }), manifest(['b1']))
    const queries = vi.spyOn(Level.prototype as unknown as { _iterator: () => unknown }, '_iterator')
    try {
      // Every chunk sent to a peer is looked up (the per-image metric): 100 range queries before.
      for (const cid of cids) expect(await store.imageOfChunk(cid)).toBe('a')
      expect(await store.imageOfChunk('b1')).toBe('b')
      expect(await store.imageOfChunk('x')).toBeUndefined()
      expect(queries.mock.calls.length).toBeLessThanOrEqual(3)
    } finally {
      queries.mockRestore()
    }
    // A lookup while the manifest changes, then after: only what the new one names.
    const replacing = store.dataAdded(image('a', { status: 'active' }), manifest(['d1']))
    await store.imageOfChunk('c1')
    await replacing
    expect(await store.imageOfChunk('c1')).toBeUndefined()
    expect(await store.imageOfChunk('d1')).toBe('a')
    expect(await store.imageOfChunk('b1')).toBe('b')
    await store.dataRemoved(image('a', { status: 'deleted' }))
    expect(await store.imageOfChunk('d1')).toBeUndefined()
    await store.manifestDropped('b')
    expect(await store.imageOfChunk('b1')).toBeUndefined()
  })

  it('answers with the manifest an image names as soon as it names it, before the write reaches disk', async () => {
    const staged = { ...manifest(['c1']), staged: true }
    await store.dataAdded(image('a', { status: 'uploading' }), staged)
    // An import: the record flips to active with the final manifest at once; a client that sees
    // it active and downloads must get that manifest, not the staged one still on disk.
    const writing = store.dataAdded(image('a', { status: 'active' }), manifest(['c1']))
    expect(store.getImage('a')?.status).toBe('active')
    expect(await store.getManifest('a')).toEqual(manifest(['c1']))
    await writing
    expect(await store.getManifest('a')).toEqual(manifest(['c1']))
    // And the other way: data removed is gone at once.
    const removing = store.dataRemoved(image('a', { status: 'queued' }))
    expect(await store.getManifest('a')).toBeUndefined()
    expect(await removing).toEqual(['c1'])
    expect(await store.isReferenced('c1')).toBe(false)
  })

  it('tells its listeners the stored copy last, when a local write lands while a merge of the same record is being written', async () => {
    const peerDir = await mkdtemp(join(tmpdir(), 'metadata-store-'))
    const peer = new LevelMetadataStore({ path: join(peerDir, 'db') })
    await peer.start()
    try {
      await peer.putImage(image('a', { name: 'from the peer' }))
      const told: string[] = []
      store.onChange(record => { if (record.key === 'a') told.push(JSON.stringify(record)) })
      // The merge is visible at once and written after; a write made in between (a client that
      // saw the merged image) is newer, and is what the store holds at the end.
      const merging = store.merge([...peer.records()])
      expect(store.getImage('a')?.name).toBe('from the peer')
      await store.putImage(image('a', { name: 'renamed here' }))
      await merging
      expect(store.getImage('a')?.name).toBe('renamed here')
      expect(told.at(-1)).toBe(JSON.stringify(store.get('image', 'a')))
    } finally {
      await peer.stop()
      await rm(peerDir, { recursive: true, force: true })
    }
  })
})
