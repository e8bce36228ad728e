import { lpStream } from '@libp2p/utils'
import type { GossipSub, GossipsubMessage } from '@libp2p/gossipsub'
import type { Connection, IdentifyResult, Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { ChangeOrigin, Logger, Replica, ReplicatedRecord, Startable } from '@peerglance/interface'
import { StateDigest, slotOf } from './state-digest.ts'
import type { PingTags } from './liveness.ts'

/** Every change to an image or a membership, as the full versioned record. */
export const METADATA_TOPIC = 'peerglance/images/1'
/**
 * Anti-entropy, for agents that joined late, were cut off or missed gossip. The requester sends
 * its root (state-digest.ts); when the responder's is the same it answers `done` and that is all.
 * Otherwise it answers with its root, the requester sends its digest (key → fingerprint of every
 * record it has), the responder sends the records whose fingerprint differs, then names the keys
 * it wants; the requester sends those. Frames are varint-length-prefixed JSON, bounded: the
 * digest may span frames (`more`), records travel about FRAME_BYTES a frame, wanted keys in
 * `{ want }` frames before `done`. No frame authentication: only mesh members can connect
 * (membership.ts), and every record carries its writers' signatures, checked on merge.
 */
export const METADATA_SYNC_PROTOCOL = '/peerglance/meta-sync/2.0.0'

const DEFAULT_SYNC_INTERVAL_MS = 2_000
/**
 * Pings carry a 32-bit tag of the sender's root (liveness.ts, every 5 s). A peer whose last tag,
 * heard this lately, was ours is in step: the round passes it over. A peer that sent the same
 * other tag twice in a row is reconciled at once (at most every 2 s).
 */
const TAG_FRESH_MS = 12_000
/** A peer in step is still reconciled this often: two different states may share a tag (1 in 2^32). */
const BACKSTOP_MS = 5 * 60_000
const SYNC_TIMEOUT_MS = 60_000
/**
 * Records are sent in frames of about this size, so a late joiner's catch-up streams whatever the
 * number of records. It also bounds gossip messages (gossipsub's receivers take up to 4 MiB).
 */
const FRAME_BYTES = 1024 * 1024
/** Digest (and want) entries per frame, for the same reason. */
const KEYS_PER_FRAME = 8192
/**
 * The largest frame read: one record alone may exceed FRAME_BYTES, but a legal one cannot exceed
 * this (128 properties of 65,535 bytes, each byte JSON-escaped to at most 6).
 */
const MAX_FRAME_BYTES = 64 * 1024 * 1024

export interface MetadataSyncComponents {
  /** With the mesh's liveness service, pings carry the state's tag (`PingTags`). */
  libp2p: Libp2p<{ pubsub: GossipSub, liveness?: { tagPings: (tags: PingTags | undefined) => void } }>
  replica: Replica
  logger: Logger
}

export interface MetadataSyncInit {
  /**
   * How often to reconcile with the next connected peer in turn, besides on every new connection
   * and whenever gossip missed a peer: with d peers, each connection is checked every d/2 intervals
   * on average (both ends take turns), at the cost of one round trip when nothing differs.
   */
  syncIntervalMs?: number
}

type Frame =
  | { root: string }
  | { digest: Array<[string, string]>, more?: true }
  | { records: ReplicatedRecord[] }
  | { want: string[] }
  | { done: true, want?: string[] }

/**
 * Replicates metadata between agents: local changes are published on a gossipsub topic as they
 * happen, and peers are reconciled by digest when they connect, when a publish did not reach
 * them, and in turn every `syncIntervalMs`, so an agent that missed gossip catches up without
 * waiting for new changes.
 */
export class MetadataSync implements Startable {
  readonly [Symbol.toStringTag] = '@peerglance/metadata-sync'
  readonly #c: MetadataSyncComponents
  readonly #interval: number
  readonly #pending = new Map<string, ReplicatedRecord>()
  readonly #syncing = new Set<string>()
  /** Peers to reconcile with again once the sync running with them ends (it began too early). */
  readonly #again = new Set<string>()
  #digest: StateDigest | undefined
  /** Where the round-robin over connected peers stands (a peer id; the next one in order is next). */
  #turn = ''
  /** Per peer: when its ping last said it holds what we hold, and when a sync with it last began. */
  readonly #inStep = new Map<string, number>()
  readonly #synced = new Map<string, number>()
  /** Per peer: the tag of its last ping, when it was not ours. */
  readonly #differs = new Map<string, number>()
  #unsubscribe: (() => void) | undefined
  #timer: NodeJS.Timeout | undefined
  #flush: Promise<void> | undefined
  #running = false

  constructor (components: MetadataSyncComponents, init: MetadataSyncInit = {}) {
    this.#c = components
    this.#interval = init.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS
    this.onGossip = this.onGossip.bind(this)
    this.onIdentify = this.onIdentify.bind(this)
    this.serve = this.serve.bind(this)
  }

  async start (): Promise<void> {
    if (this.#running) return
    this.#running = true
    const { libp2p, replica } = this.#c
    const pubsub = libp2p.services.pubsub
    pubsub.subscribe(METADATA_TOPIC)
    pubsub.addEventListener('gossipsub:message', this.onGossip)
    await libp2p.handle(METADATA_SYNC_PROTOCOL, this.serve, { maxInboundStreams: 8 })
    libp2p.addEventListener('peer:identify', this.onIdentify)
    this.#digest = new StateDigest(replica)
    this.#unsubscribe = replica.onChange((record, origin) => { this.#changed(record, origin) })
    this.#timer = setInterval(() => { this.#syncNextPeer() }, this.#interval)
    this.#timer.unref()
    libp2p.services.liveness?.tagPings({ mine: () => this.#stateDigest.tag, heard: (peer, tag) => { this.#heardTag(peer, tag) } })
    // The mesh dials its bootstrap peers before this service exists: those connections were
    // identified without us, and the peers heard no subscription from us yet.
    for (const peer of libp2p.getPeers()) this.#request(peer)
  }

  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    clearInterval(this.#timer)
    this.#c.libp2p.services.liveness?.tagPings(undefined)
    this.#unsubscribe?.()
    this.#digest = undefined
    await this.#flush
    const { libp2p } = this.#c
    libp2p.removeEventListener('peer:identify', this.onIdentify)
    libp2p.services.pubsub.removeEventListener('gossipsub:message', this.onGossip)
    libp2p.services.pubsub.unsubscribe(METADATA_TOPIC)
    await libp2p.unhandle(METADATA_SYNC_PROTOCOL)
  }

  /** Reconciles with one peer now; resolves once both sides have what the other had. */
  async syncWith (peer: PeerId, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const id = peer.toString()
    if (this.#syncing.has(id)) return
    this.#syncing.add(id)
    this.#synced.set(id, Date.now())
    const signal = AbortSignal.any([AbortSignal.timeout(SYNC_TIMEOUT_MS), ...opts.signal == null ? [] : [opts.signal]])
    try {
      const stream = await this.#c.libp2p.dialProtocol(peer, METADATA_SYNC_PROTOCOL, { signal })
      const lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES, maxBufferSize: MAX_FRAME_BYTES })
      const { replica } = this.#c
      const digest = this.#stateDigest
      await lp.write(encode({ root: digest.root }), { signal })
      const answer = read(await lp.read({ signal }))
      if ('done' in answer) {
        await stream.close({ signal })
        return
      }
      for (const frame of digestFrames([...digest.entries()])) await lp.write(frame, { signal })
      let merged = 0
      const want: string[] = []
      for (;;) {
        const frame = read(await lp.read({ signal }))
        if ('records' in frame && Array.isArray(frame.records)) merged += await this.#merge(frame.records, 'sync', id)
        if ('want' in frame && Array.isArray(frame.want)) want.push(...frame.want)
        if ('done' in frame) {
          for (const bytes of recordFrames(this.#lookup(want))) await lp.write(bytes, { signal })
          await lp.write(encode({ done: true }), { signal })
          break
        }
      }
      await stream.close({ signal })
      if (merged > 0) this.#c.logger.info({ peer: id, records: merged }, 'caught up from peer')
    } finally {
      this.#syncing.delete(id)
      if (this.#again.delete(id)) this.#request(peer)
    }
  }

  /**
   * Reconciles with the peer now, or once the sync already running with it ends: that one sent
   * its digest before the change that asked for this one.
   */
  #request (peer: PeerId): void {
    const id = peer.toString()
    if (!this.#running || this.#c.libp2p.getConnections(peer).length === 0) return
    if (this.#syncing.has(id)) {
      this.#again.add(id)
      return
    }
    this.syncWith(peer).catch(err => {
      this.#c.logger.debug({ err, peer: id }, 'sync failed')
    })
  }

  /** The responder side of anti-entropy. */
  async serve (stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES, maxBufferSize: MAX_FRAME_BYTES })
      const { replica } = this.#c
      const digest = this.#stateDigest
      const hello = read(await lp.read({ signal }))
      if (!('root' in hello)) throw new Error('expected a root')
      if (hello.root === digest.root) {
        await lp.write(encode({ done: true }), { signal })
        await stream.close({ signal })
        return
      }
      await lp.write(encode({ root: digest.root }), { signal })
      const theirs = new Map<string, string>()
      for (;;) {
        const frame = read(await lp.read({ signal }))
        if (!('digest' in frame) || !Array.isArray(frame.digest)) throw new Error('expected a digest')
        for (const [key, fingerprint] of frame.digest) theirs.set(String(key), String(fingerprint))
        if (frame.more !== true) break
      }
      const send: ReplicatedRecord[] = []
      for (const record of replica.records()) {
        if (theirs.get(slotOf(record)) !== digest.fingerprint(slotOf(record))) send.push(record)
      }
      // Different, not just newer: each side may hold the latest write of a different field.
      const want = [...theirs].filter(([key, fingerprint]) => digest.fingerprint(key) !== fingerprint).map(([key]) => key)
      for (const bytes of recordFrames(send)) await lp.write(bytes, { signal })
      for (let i = 0; i < want.length; i += KEYS_PER_FRAME) await lp.write(encode({ want: want.slice(i, i + KEYS_PER_FRAME) }), { signal })
      await lp.write(encode({ done: true }), { signal })
      let merged = 0
      for (;;) {
        const frame = read(await lp.read({ signal }))
        if ('records' in frame && Array.isArray(frame.records)) merged += await this.#merge(frame.records, 'sync', connection.remotePeer.toString())
        if ('done' in frame) break
      }
      await stream.close({ signal })
      // Either end may be the one that catches up, whichever dialled first.
      if (merged > 0) this.#c.logger.info({ peer: connection.remotePeer.toString(), records: merged }, 'caught up from peer')
    } catch (err) {
      this.#c.logger.warn({ err, peer: connection.remotePeer.toString() }, 'metadata sync failed')
      stream.abort(err as Error)
    }
  }

  onGossip (event: CustomEvent<GossipsubMessage>): void {
    const { msg, propagationSource } = event.detail
    if (msg.topic !== METADATA_TOPIC) return
    const frame = parse(msg.data)
    if (frame == null || !('records' in frame) || !Array.isArray(frame.records)) return
    const records = frame.records
    const from = msg.type === 'signed' ? msg.from.toString() : undefined
    void this.#merge(records, 'gossip', propagationSource.toString(), from).catch(err => {
      this.#c.logger.warn({ err }, 'merging gossip failed')
    })
  }

  onIdentify (event: CustomEvent<IdentifyResult>): void {
    if (!event.detail.protocols.includes(METADATA_SYNC_PROTOCOL)) return
    this.#request(event.detail.peerId)
  }

  /**
   * Merges what a peer sent (`origin`: who wrote it, for the record of refusals) and says at debug
   * how it came: scripts/bench/convergence.ts follows each change hop by hop from these lines.
   */
  async #merge (records: ReplicatedRecord[], via: 'gossip' | 'sync', peer: string, origin: string | undefined = peer): Promise<number> {
    const merged = await this.#c.replica.merge(records, origin)
    if (merged > 0) this.#c.logger.debug({ via, peer, origin, keys: keysOf(records) }, 'merged changes')
    return merged
  }

  /** Local changes are published on the next tick, so a burst of writes becomes one message. */
  #changed (record: ReplicatedRecord, origin: ChangeOrigin): void {
    this.#digest?.update(record)
    if (origin !== 'local' || !this.#running) return
    this.#pending.set(slotOf(record), record)
    this.#flush ??= new Promise<void>(resolve => setImmediate(resolve)).then(async () => {
      const records = [...this.#pending.keys()].map(key => this.#get(key)).filter(r => r != null)
      this.#pending.clear()
      this.#flush = undefined
      for (const bytes of recordFrames(records)) await this.#publish(bytes)
    })
  }

  /**
   * Gossips the records, then reconciles at once with every connected peer gossipsub did not
   * send them to: for a moment after a connection opens, gossipsub has no stream to the peer or
   * has not heard its subscription yet, while the sync on connect may already have run.
   */
  async #publish (frame: Uint8Array): Promise<void> {
    const { libp2p } = this.#c
    let reached = new Set<string>()
    try {
      // A record too large for gossip reaches the peers by the syncs below alone.
      if (frame.byteLength > 2 * FRAME_BYTES) throw new Error(`a ${frame.byteLength}-byte record is not gossiped`)
      const { recipients } = await libp2p.services.pubsub.publish(METADATA_TOPIC, frame)
      reached = new Set(recipients.map(p => p.toString()))
      this.#c.logger.debug({ recipients: reached.size, peers: libp2p.getPeers().length }, 'published changes')
    } catch (err) {
      this.#c.logger.debug({ err }, 'gossip publish failed')
    }
    for (const peer of libp2p.getPeers()) if (!reached.has(peer.toString())) this.#request(peer)
  }

  /** A peer's ping said what it holds (its tag): in step, or to be reconciled now. */
  #heardTag (peer: PeerId, tag: number): void {
    if (!this.#running) return
    const id = peer.toString()
    const now = Date.now()
    if (tag === this.#stateDigest.tag) {
      this.#inStep.set(id, now)
      this.#differs.delete(id)
      return
    }
    this.#inStep.delete(id)
    // The same other tag twice: its state holds still and is not ours (a change gossip missed, not
    // one on its way). An agent that predates tags counts its ping ids up: it is reconciled in
    // turn, as before. A member that plays this gets a sync every 2 s at most.
    const again = this.#differs.get(id) === tag
    if (this.#differs.size >= 1024) this.#differs.clear()
    this.#differs.set(id, tag)
    if (again && now - (this.#synced.get(id) ?? 0) >= Math.min(this.#interval, DEFAULT_SYNC_INTERVAL_MS)) this.#request(peer)
  }

  /**
   * Every connected agent in turn (by peer id order), one per interval; those whose pings say
   * they are in step only every BACKSTOP_MS. Before, every sync opened a stream (multistream
   * negotiation, a frame each way, the closes): ~10 frames, ~1 % of a downloader's main thread.
   */
  #syncNextPeer (): void {
    const peers = this.#c.libp2p.services.pubsub.getSubscribers(METADATA_TOPIC).sort((x, y) => x.toString().localeCompare(y.toString()))
    const now = Date.now()
    for (const [id, at] of this.#inStep) if (now - at >= TAG_FRESH_MS) this.#inStep.delete(id)
    for (const [id, at] of this.#synced) if (now - at >= BACKSTOP_MS) this.#synced.delete(id)
    const due = (p: PeerId): boolean => !this.#inStep.has(p.toString()) || !this.#synced.has(p.toString())
    const next = peers.find(p => p.toString() > this.#turn && due(p)) ?? peers.find(due)
    if (next == null) return
    this.#turn = next.toString()
    this.#request(next)
  }

  /** The digest kept since start; a sync served before start (never, in the agent) builds one. */
  get #stateDigest (): StateDigest {
    this.#digest ??= new StateDigest(this.#c.replica)
    return this.#digest
  }

  /** The root of this agent's state digest: equal on two agents exactly when they hold the same records. */
  get stateRoot (): string {
    return this.#stateDigest.root
  }

  #get (slotKey: string): ReplicatedRecord | undefined {
    return this.#stateDigest.get(slotKey)
  }

  #lookup (keys: string[]): ReplicatedRecord[] {
    return keys.map(key => this.#get(key)).filter(r => r != null)
  }

}

/** The keys of up to 16 records, for the debug log. */
function keysOf (records: ReplicatedRecord[]): string[] {
  return records.slice(0, 16).map(r => String(r.key))
}

function encode (frame: Frame): Uint8Array {
  return Buffer.from(JSON.stringify(frame))
}

function parse (bytes: Uint8Array | { subarray: () => Uint8Array }): Frame | undefined {
  try {
    const raw = bytes instanceof Uint8Array ? bytes : bytes.subarray()
    const frame = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8')) as unknown
    return frame != null && typeof frame === 'object' ? frame as Frame : undefined
  } catch {
    return undefined
  }
}

function read (bytes: { subarray: () => Uint8Array }): Frame {
  const frame = parse(bytes)
  if (frame == null) throw new Error('malformed sync frame')
  return frame
}

/** The digest in frames of KEYS_PER_FRAME entries, all but the last marked `more`. */
function * digestFrames (entries: Array<[string, string]>): Generator<Uint8Array> {
  for (let i = 0; ; i += KEYS_PER_FRAME) {
    const more = i + KEYS_PER_FRAME < entries.length
    yield encode({ digest: entries.slice(i, i + KEYS_PER_FRAME), ...more ? { more: true as const } : {} })
    if (!more) return
  }
}

/** Records in frames of about FRAME_BYTES; a larger record goes alone. Each is serialized once. */
function * recordFrames (records: Iterable<ReplicatedRecord>): Generator<Uint8Array> {
  let parts: string[] = []
  let size = 0
  for (const record of records) {
    const json = JSON.stringify(record)
    if (parts.length > 0 && size + json.length > FRAME_BYTES) {
      yield Buffer.from(`{"records":[${parts.join(',')}]}`)
      parts = []
      size = 0
    }
    parts.push(json)
    size += json.length + 1
  }
  if (parts.length > 0) yield Buffer.from(`{"records":[${parts.join(',')}]}`)
}
