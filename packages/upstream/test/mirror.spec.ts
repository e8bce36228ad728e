import { describe, expect, it } from 'vitest'
import type { ImageRecord, MemberRecord } from '@peerglance/interface'
import { UPSTREAM_PROPERTY, UpstreamMirror, isMirrored, rank, toRecord } from '../src/index.ts'
import type { GlanceClient, MirrorStore, UpstreamImage } from '../src/index.ts'
import { silentLogger } from '@peerglance/interface'


function upstreamImage (id: string, extra: Record<string, unknown> = {}): UpstreamImage {
  return {
    id, name: `image ${id}`, status: 'active', visibility: 'private', owner: 'p1', protected: false, os_hidden: false,
    size: 10, virtual_size: 10, checksum: 'c', os_hash_algo: 'sha512', os_hash_value: 'h', disk_format: 'raw', container_format: 'bare',
    min_ram: 0, min_disk: 0, tags: ['b', 'a'], created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z',
    self: `/v2/images/${id}`, file: `/v2/images/${id}/file`, schema: '/v2/schemas/image', stores: 'file', os_distro: 'cirros', ...extra
  }
}

function memoryStore (): MirrorStore & { writes: number, deleted: string[] } {
  const images = new Map<string, ImageRecord>()
  const members = new Map<string, MemberRecord>()
  const store = {
    writes: 0,
    deleted: [] as string[],
    images: () => images.values(),
    // Keys in another order than written, as the metadata store gives them back.
    getImage: (id: string) => { const image = images.get(id); return image == null ? undefined : Object.fromEntries(Object.entries(image).reverse()) as unknown as ImageRecord },
    putImage: async (image: ImageRecord) => { store.writes++; images.set(image.id, image) },
    members: (id: string) => [...members.values()].filter(m => m.image_id === id),
    putMember: async (m: MemberRecord) => { store.writes++; members.set(`${m.image_id}!${m.member_id}`, m) },
    deleteMember: async (imageId: string, memberId: string) => { store.writes++; members.delete(`${imageId}!${memberId}`) },
    deleteImage: async (image: ImageRecord) => { store.deleted.push(image.id); images.set(image.id, { ...image, status: 'deleted' }) }
  }
  return store
}

function mirrorOf (list: () => Promise<UpstreamImage[]>, store: MirrorStore, self = 'me', known: string[] = [], pollers = 2): UpstreamMirror {
  const client = { listImages: list, members: async () => [] } as unknown as GlanceClient
  return new UpstreamMirror({
    client,
    store,
    logger: silentLogger,
    peers: { self, known: async () => known, publish: async () => {}, onMessage: () => () => {} }
  }, { upstream: 'http://glance', intervalMs: 1000, pollers })
}

describe('UpstreamMirror', () => {
  it('writes each upstream image once, marked and without the view\'s links; an unchanged list writes nothing', async () => {
    const store = memoryStore()
    const images = [upstreamImage('i1'), upstreamImage('i2', { visibility: 'public' })]
    const mirror = mirrorOf(async () => images, store)
    expect(await mirror.refresh()).toEqual({ images: 2, written: 2, deleted: 0 })
    const record = store.getImage('i1') as ImageRecord
    expect(isMirrored(record)).toBe(true)
    expect(record.properties).toEqual({ os_distro: 'cirros', [UPSTREAM_PROPERTY]: 'true' })
    expect(record.tags).toEqual(['a', 'b'])
    expect(await mirror.refresh()).toEqual({ images: 2, written: 0, deleted: 0 })
    images[0] = upstreamImage('i1', { name: 'renamed', updated_at: '2026-01-02T00:00:00Z' })
    expect(await mirror.refresh()).toEqual({ images: 2, written: 1, deleted: 0 })
    expect(store.getImage('i1')?.name).toBe('renamed')
  })

  it('deletes what a whole list no longer has, never on a failed list, and never an image made in the mesh', async () => {
    const store = memoryStore()
    await store.putImage({ ...toRecord(upstreamImage('local')), properties: {} })
    let list: () => Promise<UpstreamImage[]> = async () => [upstreamImage('i1'), upstreamImage('i2')]
    const mirror = mirrorOf(async () => await list(), store)
    await mirror.refresh()
    list = async () => { throw new Error('upstream down') }
    expect(await mirror.refresh()).toBeUndefined()
    expect(mirror.lastError).toBe('upstream down')
    expect(store.deleted).toEqual([])
    list = async () => [upstreamImage('i2')]
    expect(await mirror.refresh()).toEqual({ images: 1, written: 0, deleted: 1 })
    expect(store.deleted).toEqual(['i1'])
    expect(store.getImage('local')?.status).toBe('active')
  })

  it('never deletes an image that arrived while its list was read (another poller mirrored it from a newer list)', async () => {
    const store = memoryStore()
    const { promise: asked, resolve: listAsked } = Promise.withResolvers<void>()
    const { promise: answer, resolve: sendList } = Promise.withResolvers<UpstreamImage[]>()
    const mirror = mirrorOf(async () => { listAsked(); return await answer }, store)
    const refreshed = mirror.refresh()
    await asked
    // While this agent's list is on its way, another poller's newer list had 'fresh': its record replicates here.
    await store.putImage(toRecord(upstreamImage('fresh')))
    sendList([upstreamImage('old')])
    expect(await refreshed).toEqual({ images: 1, written: 1, deleted: 0 })
    expect(store.deleted).toEqual([])
    expect(store.getImage('fresh')?.status).toBe('active')
    // A later list that still lacks it says it is gone.
    const later = mirrorOf(async () => [upstreamImage('old')], store)
    expect(await later.refresh()).toEqual({ images: 1, written: 0, deleted: 1 })
    expect(store.deleted).toEqual(['fresh'])
  })

  it('lets only `pollers` agents of a thousand poll when each knows the others', async () => {
    const agents = Array.from({ length: 1000 }, (_, i) => `agent-${i}`)
    const polling = []
    for (const self of agents) {
      if (await mirrorOf(async () => [], memoryStore(), self, agents.filter(a => a !== self), 2).isPoller()) polling.push(self)
    }
    expect(polling).toEqual(rank('http://glance', agents).slice(0, 2))
  })
})
