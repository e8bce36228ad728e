import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from '@libp2p/interface'
import { afterEach, describe, expect, it } from 'vitest'
import type { ImageRecord } from '@peerglance/interface'
import { LevelMetadataStore } from '@peerglance/metadata-store'
import { liveness } from '../src/liveness.ts'
import { MetadataSync } from '../src/metadata-sync.ts'
import { silentLogger } from '@peerglance/interface'

interface Node { libp2p: Libp2p<{ pubsub: GossipSub }>, store: LevelMetadataStore, sync: MetadataSync, dir: string, served: () => number }
const nodes: Node[] = []

/**
 * `pingMs`: with the mesh's liveness service, pinging every that often (pings then carry the
 * state's tag); `untagged`: its sync does not see that service, as in an agent that predates tags.
 */
async function node (opts: { start?: boolean, syncIntervalMs?: number, pingMs?: number, untagged?: boolean } = {}): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), 'meta-sync-'))
  const libp2p = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }),
      ...opts.pingMs != null ? { liveness: liveness({ intervalMs: opts.pingMs, timeoutMs: 5_000 }) } : {}
    }
  })
  const store = new LevelMetadataStore({ path: join(dir, 'db') })
  await store.start()
  const seen = opts.untagged !== true
    ? libp2p
    : new Proxy(libp2p, {
      get: (target, key) => {
        if (key === 'services') return { pubsub: target.services.pubsub }
        const value = Reflect.get(target, key)
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
  const sync = new MetadataSync({ libp2p: seen, replica: store, logger: silentLogger }, { syncIntervalMs: opts.syncIntervalMs ?? 60_000 })
  // Counts the syncs this agent answers.
  let served = 0
  const serve = sync.serve
  sync.serve = async (stream, connection) => {
    served++
    await serve(stream, connection)
  }
  if (opts.start !== false) await sync.start()
  const n = { libp2p, store, sync, dir, served: () => served }
  nodes.push(n)
  return n
}

afterEach(async () => {
  for (const n of nodes.splice(0)) {
    await n.sync.stop()
    await n.libp2p.stop()
    await n.store.stop()
    await rm(n.dir, { recursive: true, force: true })
  }
})

function image (id: string, over: Partial<ImageRecord> = {}): ImageRecord {
  return {
    id, name: id, status: 'queued', visibility: 'shared', protected: false, os_hidden: false, owner: 'p', checksum: null,
    os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, container_format: 'bare', disk_format: 'raw',
    min_ram: 0, min_disk: 0, tags: [], created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z', properties: {}, ...over
  }
}

async function until (what: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!what()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

async function connect (a: Node, b: Node): Promise<void> {
  await a.libp2p.dial(b.libp2p.getMultiaddrs()[0])
}

/** Connects the two and waits until they hold the same state and A knows B's subscription, then a little more. */
async function inStep (a: Node, b: Node): Promise<void> {
  await connect(a, b)
  await until(() => a.sync.stateRoot === b.sync.stateRoot && a.libp2p.services.pubsub.getSubscribers('peerglance/images/1').length > 0)
  await new Promise(resolve => setTimeout(resolve, 300))
}

/** A record `to` takes from an agent outside the mesh (merged, so not gossiped on): only anti-entropy spreads it. */
async function mergedFromElsewhere (to: Node, id: string): Promise<void> {
  const c = await node({ start: false })
  await c.store.putImage(image(id))
  await to.store.merge([...c.store.records()], c.libp2p.peerId.toString())
}

describe('metadata sync', () => {
  it('gossips every kind of change to a connected agent', async () => {
    const [a, b] = [await node(), await node()]
    await connect(a, b)
    await until(() => a.libp2p.services.pubsub.getSubscribers('peerglance/images/1').length > 0)
    await a.store.putImage(image('i1', { properties: { os_distro: 'debian' }, tags: ['x'] }))
    await until(() => b.store.getImage('i1')?.properties.os_distro === 'debian')
    await a.store.putImage(image('i1', { name: 'renamed', properties: {}, tags: ['x', 'y'] }))
    await until(() => b.store.getImage('i1')?.name === 'renamed')
    expect(b.store.getImage('i1')?.properties).toEqual({})
    expect(b.store.getImage('i1')?.tags).toEqual(['x', 'y'])
    await a.store.putMember({ image_id: 'i1', member_id: 'bob', status: 'pending', created_at: 'c', updated_at: 'u' })
    await until(() => b.store.members('i1').length === 1)
    await b.store.putMember({ image_id: 'i1', member_id: 'bob', status: 'accepted', created_at: 'c', updated_at: 'u2' })
    await until(() => a.store.members('i1')[0]?.status === 'accepted')
    await a.store.deleteMember('i1', 'bob')
    await until(() => b.store.members('i1').length === 0)
    await a.store.dataAdded(image('i1', { status: 'active', size: 3 }), { size: 3, chunkSize: 1, cids: ['c1', 'c2', 'c3'], md5: 'm', sha512: 's', staged: false })
    await until(() => b.store.getImage('i1')?.status === 'active')
    expect(b.store.manifestCidOf('i1')).toBe(a.store.manifestCidOf('i1'))
    expect(await b.store.getManifest('i1')).toBeUndefined()
    await a.store.putImage(image('i1', { status: 'deleted' }))
    await until(() => b.store.getImage('i1')?.status === 'deleted')
  })

  it('delivers writes made as an agent whose mesh connected first starts its sync, at once', async () => {
    // The agent starts its mesh (and dials its bootstrap peer) before its metadata sync exists:
    // that connection is identified before the sync protocol is registered on either side's view.
    const a = await node()
    const b = await node({ start: false })
    await connect(b, a)
    await until(() => a.libp2p.getPeers().length === 1 && b.libp2p.getPeers().length === 1)
    await new Promise(resolve => setTimeout(resolve, 200))
    await a.store.putImage(image('before-start'))
    await b.sync.start()
    // A does not know yet that B subscribed: gossip misses B, the sync on B's start ran before.
    await a.store.putImage(image('just-after-start'))
    await until(() => b.store.getImage('before-start') != null && b.store.getImage('just-after-start') != null, 2000)
  })

  it('lets a late joiner catch up without new gossip', async () => {
    const a = await node()
    for (let i = 0; i < 300; i++) await a.store.putImage(image(`late-${i}`))
    const b = await node()
    await connect(b, a)
    await until(() => [...b.store.images()].length === 300)
    expect(b.store.getImage('late-299')).toEqual(a.store.getImage('late-299'))
  })

  it('converges when two agents change the same image while apart', async () => {
    const [a, b] = [await node(), await node()]
    await a.store.putImage(image('same'))
    await connect(a, b)
    await until(() => b.store.getImage('same') != null)
    await a.libp2p.hangUp(b.libp2p.peerId)
    await a.store.putImage(image('same', { name: 'from-a', min_ram: 1 }))
    await b.store.putImage(image('same', { name: 'from-b', properties: { k: 'b' } }))
    await connect(a, b)
    await until(() => JSON.stringify(a.store.get('image', 'same')) === JSON.stringify(b.store.get('image', 'same')))
    const merged = a.store.getImage('same')
    // The same field written on both sides: one deterministic winner; different fields: both kept.
    expect(['from-a', 'from-b']).toContain(merged?.name)
    expect(b.store.getImage('same')).toEqual(merged)
    expect(merged?.properties).toEqual({ k: 'b' })
    expect(merged?.min_ram).toBe(1)
  })

  it('reconciles copies whose latest write is the same but that differ in an older one', async () => {
    const [a, b, c] = [await node(), await node(), await node()]
    await a.store.putImage(image('i'))
    await connect(a, b)
    await connect(a, c)
    await until(() => b.store.getImage('i') != null && c.store.getImage('i') != null)
    for (const n of [b, c]) await a.libp2p.hangUp(n.libp2p.peerId)
    // Apart: B writes one field, then A (later, so its clock is the record's latest) another.
    await b.store.putImage(image('i', { min_ram: 4 }))
    await new Promise(resolve => setTimeout(resolve, 20))
    await a.store.putImage(image('i', { name: 'from-a' }))
    // C carries A's write to B: B now holds both writes, A only its own; their latest clocks are equal.
    await connect(c, a)
    await until(() => c.store.getImage('i')?.name === 'from-a')
    await a.libp2p.hangUp(c.libp2p.peerId)
    await connect(c, b)
    await until(() => b.store.getImage('i')?.name === 'from-a' && c.store.getImage('i')?.min_ram === 4)
    expect(a.sync.stateRoot).not.toBe(b.sync.stateRoot)
    await connect(a, b)
    // The store shows a merged record as soon as it is applied; the digest takes it once the
    // merge is on disk and announced, a moment later: wait for both.
    await until(() => a.store.getImage('i')?.min_ram === 4 && a.sync.stateRoot === b.sync.stateRoot, 2000)
    expect(a.store.get('image', 'i')).toEqual(b.store.get('image', 'i'))
  })

  it('keeps both tags when two agents tag the same image at once', async () => {
    const [a, b] = [await node(), await node()]
    await a.store.putImage(image('tagged'))
    await connect(a, b)
    await until(() => b.store.getImage('tagged') != null)
    await a.libp2p.hangUp(b.libp2p.peerId)
    await a.store.putImage(image('tagged', { tags: ['from-a'] }))
    await b.store.putImage(image('tagged', { tags: ['from-b'] }))
    await connect(a, b)
    await until(() => a.store.getImage('tagged')?.tags.length === 2 && b.store.getImage('tagged')?.tags.length === 2)
    expect(a.store.getImage('tagged')?.tags).toEqual(['from-a', 'from-b'])
    await b.store.putImage(image('tagged', { tags: ['from-a'] }))
    await until(() => a.store.getImage('tagged')?.tags.length === 1)
    expect(a.store.getImage('tagged')?.tags).toEqual(['from-a'])
  })

  it('keeps a deleted image deleted even against a later update', async () => {
    const [a, b] = [await node(), await node()]
    await a.store.putImage(image('gone'))
    await connect(a, b)
    await until(() => b.store.getImage('gone') != null)
    await a.libp2p.hangUp(b.libp2p.peerId)
    await b.store.putImage(image('gone', { status: 'deleted' }))
    await a.store.putImage(image('gone', { name: 'later' }))
    await connect(a, b)
    await until(() => a.store.getImage('gone')?.status === 'deleted' && b.store.getImage('gone')?.name === 'later')
  })

  it('lets a late joiner catch up on many records and on large legal ones, in bounded frames', async () => {
    const a = await node()
    // 6 records of 128 properties of 65,535 bytes (8 MiB each, 50 MiB in all) and 5,000 small ones.
    const value = 'v'.repeat(65_535)
    for (let i = 0; i < 6; i++) {
      await a.store.putImage(image(`big-${i}`, { properties: Object.fromEntries(Array.from({ length: 128 }, (_, k) => [`p${k}`, value])) }))
    }
    for (let i = 0; i < 5000; i++) void a.store.putImage(image(`small-${i}`))
    await a.store.putImage(image('last'))
    const b = await node()
    await connect(b, a)
    await until(() => b.store.getImage('last') != null && [...b.store.images()].length === 5007, 30_000)
    expect(b.store.getImage('big-5')?.properties.p127).toHaveLength(65_535)
    expect(b.store.getImage('small-4999')?.name).toBe('small-4999')
  }, 60_000)

  it('does not reconcile in turn with a peer whose pings say it holds what we hold', async () => {
    // The round every 100 ms; pings every 100 ms carry each agent's tag.
    const [a, b] = [await node({ syncIntervalMs: 100, pingMs: 100 }), await node({ syncIntervalMs: 100, pingMs: 100 })]
    await a.store.putImage(image('shared'))
    await connect(a, b)
    await until(() => b.store.getImage('shared') != null && a.sync.stateRoot === b.sync.stateRoot)
    await new Promise(resolve => setTimeout(resolve, 500))
    const before = a.served() + b.served()
    await new Promise(resolve => setTimeout(resolve, 1_500))
    // Without the tags: one sync per 100 ms round, ~15 (plus those of the other end).
    expect(a.served() + b.served() - before).toBeLessThanOrEqual(1)
    // A change still travels by gossip.
    await a.store.putImage(image('shared', { name: 'renamed' }))
    await until(() => b.store.getImage('shared')?.name === 'renamed')
  })

  it('reconciles at once with a peer whose ping says it holds something else, without waiting for its turn', async () => {
    // The round is a minute: only a ping can start this sync.
    const [a, b] = [await node({ pingMs: 100 }), await node({ pingMs: 100 })]
    await inStep(a, b)
    // A record B takes from elsewhere (merged, so not gossiped on): only anti-entropy brings it to A.
    await mergedFromElsewhere(b, 'from-elsewhere')
    expect(b.store.getImage('from-elsewhere')).not.toBeUndefined()
    // Two pings with B's new tag, and at most one sync per 2 s with a peer: the one on connect may be that recent.
    await until(() => a.store.getImage('from-elsewhere') != null, 4_000)
  })

  it('reconciles in turn with an agent whose pings carry no tag (it predates them), as before', async () => {
    // A's round every 100 ms; B's is a minute and its ping ids count up.
    const a = await node({ syncIntervalMs: 100, pingMs: 100 })
    const b = await node({ pingMs: 100, untagged: true })
    await inStep(a, b)
    await mergedFromElsewhere(a, 'only-on-a')
    await until(() => b.store.getImage('only-on-a') != null, 3_000)
  })
})
