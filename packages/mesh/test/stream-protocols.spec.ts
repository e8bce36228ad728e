import type { Peer, PeerId, PeerStore } from '@libp2p/interface'
import { afterEach, describe, expect, it } from 'vitest'
import { skipRepeatedProtocolMerges } from '../src/stream-protocols.ts'
import { cleanup, fullyConnected, startAgent, until } from './fixtures.ts'

const PROTOCOL = '/peerglance/test-stream/1.0.0'

/** Counts the merges of protocols alone that reach the peer store's records (libp2p's PersistentStore under the PeerStore). */
function countStoreMerges (peerStore: PeerStore): { merges: number } {
  const store = (peerStore as unknown as { store: { merge: (...args: unknown[]) => Promise<unknown> } }).store
  const merge = store.merge.bind(store)
  const counter = { merges: 0 }
  store.merge = async (...args: unknown[]) => {
    if (Object.keys(args[1] as object).join() === 'protocols') counter.merges++
    return await merge(...args)
  }
  return counter
}

describe('protocol merges into the peer store per stream', () => {
  afterEach(cleanup)

  it('write the record once, not at every stream opened, and still list the protocol', async () => {
    const a = await startAgent()
    const b = await startAgent({ bootstrap: a.mesh.multiaddrs })
    await fullyConnected([a, b])
    await b.mesh.libp2p.handle(PROTOCOL, async stream => {
      for await (const _ of stream) {}
      await stream.close()
    })
    // Identify replaces a peer's protocols with the list the peer sent (it is the one to name ping).
    const identified = async (at: typeof a, of: typeof a): Promise<boolean> => await at.mesh.libp2p.peerStore.get(of.mesh.libp2p.peerId).then(p => p.protocols.includes('/ipfs/ping/1.0.0'), () => false)
    await until(async () => await identified(a, b) && await identified(b, a), 10_000, 'identify at both ends')
    const open = async (i: number): Promise<void> => {
      const stream = await a.mesh.libp2p.dialProtocol(b.mesh.libp2p.peerId, PROTOCOL)
      stream.send(new Uint8Array([i]))
      await stream.close()
    }
    await open(0)
    const atA = countStoreMerges(a.mesh.libp2p.peerStore)
    const atB = countStoreMerges(b.mesh.libp2p.peerStore)
    for (let i = 1; i <= 20; i++) await open(i)
    // libp2p merged the protocol at both ends of every stream: 20 and 20 before.
    expect(atA.merges).toBe(0)
    expect(atB.merges).toBeLessThanOrEqual(1)
    expect((await a.mesh.libp2p.peerStore.get(b.mesh.libp2p.peerId)).protocols).toContain(PROTOCOL)
    expect((await b.mesh.libp2p.peerStore.get(a.mesh.libp2p.peerId)).protocols).toContain(PROTOCOL)
  })

  it('merge again once another write replaced the protocols, and at least once a minute', async () => {
    const store = fakePeerStore()
    let now = 0
    skipRepeatedProtocolMerges(store, () => now)
    const peer = (await startAgent()).mesh.libp2p.peerId
    await store.merge(peer, { protocols: [PROTOCOL] })
    await store.merge(peer, { protocols: [PROTOCOL] })
    expect(store.merges).toBe(1)
    // Identify replaces a peer's protocols with the ones it lists now.
    await store.patch(peer, { protocols: ['/other/1.0.0'] })
    await store.merge(peer, { protocols: [PROTOCOL] })
    expect(store.merges).toBe(2)
    expect((await store.get(peer)).protocols).toEqual(['/other/1.0.0', PROTOCOL])
    // The record's `updated` stamp (libp2p's expiry of unused peers reads it) is refreshed.
    now += 59_000
    await store.merge(peer, { protocols: [PROTOCOL] })
    expect(store.merges).toBe(2)
    now += 2_000
    await store.merge(peer, { protocols: [PROTOCOL] })
    expect(store.merges).toBe(3)
    // A deleted record comes back with the next stream.
    await store.delete(peer)
    await store.merge(peer, { protocols: [PROTOCOL] })
    expect(store.merges).toBe(4)
    expect((await store.get(peer)).protocols).toEqual([PROTOCOL])
    // Anything else reaches the store; a patch that leaves the protocols alone keeps what is known.
    await store.merge(peer, { protocols: [PROTOCOL, '/other/1.0.0'] })
    await store.merge(peer, { metadata: { k: new Uint8Array([1]) } })
    await store.patch(peer, { tags: { t: { value: 1 } } })
    await store.merge(peer, { protocols: ['/other/1.0.0'] })
    expect(store.merges).toBe(6)
    // A save replaces the whole record.
    await store.save(peer, { protocols: [] })
    await store.merge(peer, { protocols: ['/other/1.0.0'] })
    expect(store.merges).toBe(7)
  })
})

/** A peer store of protocol lists only, counting the merges that reach it. */
function fakePeerStore (): PeerStore & { merges: number } {
  const records = new Map<string, string[]>()
  const peer = (id: PeerId): Peer => ({ id, protocols: [...records.get(id.toString()) ?? []], addresses: [], metadata: new Map(), tags: new Map() })
  const store = {
    merges: 0,
    async merge (id: PeerId, data: { protocols?: string[] }) {
      store.merges++
      const list = records.get(id.toString()) ?? []
      for (const p of data.protocols ?? []) if (!list.includes(p)) list.push(p)
      records.set(id.toString(), list)
      return peer(id)
    },
    async patch (id: PeerId, data: { protocols?: string[] }) {
      if (data.protocols != null) records.set(id.toString(), [...data.protocols])
      return peer(id)
    },
    async save (id: PeerId, data: { protocols?: string[] }) {
      records.set(id.toString(), [...data.protocols ?? []])
      return peer(id)
    },
    async delete (id: PeerId) { records.delete(id.toString()) },
    async get (id: PeerId) { return peer(id) },
  }
  return store as unknown as PeerStore & { merges: number }
}
