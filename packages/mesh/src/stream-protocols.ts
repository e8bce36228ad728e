import type { AbortOptions, Peer, PeerData, PeerId, PeerStore } from '@libp2p/interface'

/**
 * libp2p merges a stream's protocol into the remote peer's peer-store record on every stream
 * opened, at both ends (libp2p's connection.js, `newStream` and `onIncomingStream`): a write
 * lock, a protobuf decode of the record, a merge, an encode and a datastore write, whether the
 * record already listed that protocol or not: ~40 % of the CPU of opening a stream and closing it
 * (docs/benchmarks.md, issue 8, "js"), paid by the metadata sync every 2 s and by every short
 * stream of HAVE and peer exchange.
 *
 * Here the record as this store last wrote it is remembered per peer, and a merge of one protocol
 * that record lists is answered with it, without touching the store, for up to REMERGE_MS: each
 * write stamps the record's `updated` time, which libp2p's expiry of peers (6 h unless used)
 * reads, so a peer in use is still written once a minute. Merges only add, so only a patch or a
 * save that sets the protocols (identify's, replacing them with what the peer lists now) and a
 * delete forget the record; every write that returns one (tags, metadata, addresses) updates it.
 */
const REMERGE_MS = 60_000
/** Peers remembered at most (the least recently written go first): bounded at any mesh size. */
const MAX_PEERS = 1024

type Written = { peer: Peer, at: number }
type Write = (id: PeerId, data: PeerData, options?: AbortOptions) => Promise<Peer>

export function skipRepeatedProtocolMerges (peerStore: PeerStore, now: () => number = Date.now): void {
  const written = new Map<string, Written>()
  const remember = (peer: Peer): void => {
    const key = peer.id.toString()
    written.delete(key)
    if (written.size >= MAX_PEERS) written.delete(written.keys().next().value as string)
    written.set(key, { peer, at: now() })
  }
  const wrap = (write: Write, replaces: (data: PeerData) => boolean): Write => async (id, data, options) => {
    // Forgotten while the write runs, so that a merge meanwhile is not answered from the old record.
    if (replaces(data)) written.delete(id.toString())
    const peer = await write(id, data, options)
    remember(peer)
    return peer
  }
  const merge = wrap(peerStore.merge.bind(peerStore), () => false)
  peerStore.merge = async (id, data, options) => {
    const protocol = onlyProtocol(data)
    const known = protocol == null ? undefined : written.get(id.toString())
    if (known != null && now() - known.at < REMERGE_MS && known.peer.protocols.includes(protocol as string)) return known.peer
    return await merge(id, data, options)
  }
  peerStore.patch = wrap(peerStore.patch.bind(peerStore), data => data.protocols != null)
  peerStore.save = wrap(peerStore.save.bind(peerStore), () => true)
  const remove = peerStore.delete.bind(peerStore)
  peerStore.delete = async (id, options) => {
    written.delete(id.toString())
    try {
      await remove(id, options)
    } finally {
      written.delete(id.toString())
    }
  }
}

/** The protocol when `data` merges exactly one protocol and nothing else, as libp2p does per stream. */
function onlyProtocol (data: PeerData): string | undefined {
  const keys = Object.keys(data)
  if (keys.length !== 1 || keys[0] !== 'protocols') return undefined
  const protocols = data.protocols
  return protocols?.length === 1 ? protocols[0] : undefined
}
