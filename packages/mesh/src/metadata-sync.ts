import { createHmac, timingSafeEqual } from 'node:crypto'
import { lpStream } from '@libp2p/utils'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { Connection, IdentifyResult, Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { ChangeOrigin, Replica, ReplicatedRecord, Startable } from '@peerglance/interface'
import { StateDigest, slotOf } from './state-digest.ts'

/** Every change to an image or a membership, as the full versioned record. */
export const METADATA_TOPIC = 'peerglance/images/1'
/**
 * Anti-entropy, for agents that joined late, were cut off or missed gossip. The requester sends
 * its root (state-digest.ts); when the responder's is the same it answers `done` and that is all.
 * Otherwise it answers with its root, the requester sends its digest (key → fingerprint of every
 * record it has), the responder sends the records whose fingerprint differs, then names the keys
 * it wants; the requester sends those. Frames are varint-length-prefixed envelopes
 * `{ b: body JSON, m: HMAC-SHA256(mesh key, b) }`.
 */
export const METADATA_SYNC_PROTOCOL = '/peerglance/meta-sync/2.0.0'

const DEFAULT_SYNC_INTERVAL_MS = 2_000
const SYNC_TIMEOUT_MS = 60_000
/** Records per frame, so a late joiner's catch-up streams instead of arriving as one message. */
const RECORDS_PER_FRAME = 256
const MAX_FRAME_BYTES = 32 * 1024 * 1024

export interface MetadataSyncLogger {
  debug: (obj: object, msg: string) => void
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
}

export interface MetadataSyncComponents {
  libp2p: Libp2p<{ pubsub: GossipSub }>
  replica: Replica
  logger: MetadataSyncLogger
}

export interface MetadataSyncInit {
  /** The mesh's shared secret: gossip and sync frames not authenticated with it are dropped. */
  key?: string
  /**
   * How often to reconcile with the next connected peer in turn, besides on every new connection
   * and whenever gossip missed a peer: with d peers, each connection is checked every d/2 intervals
   * on average (both ends take turns), at the cost of one round trip when nothing differs.
   */
  syncIntervalMs?: number
}

type Frame =
  | { root: string }
  | { digest: Array<[string, string]> }
  | { records: ReplicatedRecord[] }
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
  readonly #key: string
  readonly #interval: number
  readonly #pending = new Map<string, ReplicatedRecord>()
  readonly #syncing = new Set<string>()
  /** Peers to reconcile with again once the sync running with them ends (it began too early). */
  readonly #again = new Set<string>()
  #digest: StateDigest | undefined
  /** Where the round-robin over connected peers stands (a peer id; the next one in order is next). */
  #turn = ''
  #unsubscribe: (() => void) | undefined
  #timer: NodeJS.Timeout | undefined
  #flush: Promise<void> | undefined
  #running = false

  constructor (components: MetadataSyncComponents, init: MetadataSyncInit = {}) {
    this.#c = components
    this.#key = init.key ?? ''
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
    pubsub.topicValidators.set(METADATA_TOPIC, (_peer, message) => this.#open(message.data) == null ? TopicValidatorResult.Reject : TopicValidatorResult.Accept)
    pubsub.subscribe(METADATA_TOPIC)
    pubsub.addEventListener('message', this.onGossip)
    await libp2p.handle(METADATA_SYNC_PROTOCOL, this.serve, { maxInboundStreams: 8 })
    libp2p.addEventListener('peer:identify', this.onIdentify)
    this.#digest = new StateDigest(replica)
    this.#unsubscribe = replica.onChange((record, origin) => { this.#changed(record, origin) })
    this.#timer = setInterval(() => { this.#syncNextPeer() }, this.#interval)
    this.#timer.unref()
    // The mesh dials its bootstrap peers before this service exists: those connections were
    // identified without us, and the peers heard no subscription from us yet.
    for (const peer of libp2p.getPeers()) this.#request(peer)
  }

  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    clearInterval(this.#timer)
    this.#unsubscribe?.()
    this.#digest = undefined
    await this.#flush
    const { libp2p } = this.#c
    libp2p.removeEventListener('peer:identify', this.onIdentify)
    libp2p.services.pubsub.removeEventListener('message', this.onGossip)
    libp2p.services.pubsub.unsubscribe(METADATA_TOPIC)
    libp2p.services.pubsub.topicValidators.delete(METADATA_TOPIC)
    await libp2p.unhandle(METADATA_SYNC_PROTOCOL)
  }

  /** Reconciles with one peer now; resolves once both sides have what the other had. */
  async syncWith (peer: PeerId, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const id = peer.toString()
    if (this.#syncing.has(id)) return
    this.#syncing.add(id)
    const signal = AbortSignal.any([AbortSignal.timeout(SYNC_TIMEOUT_MS), ...opts.signal == null ? [] : [opts.signal]])
    try {
      const stream = await this.#c.libp2p.dialProtocol(peer, METADATA_SYNC_PROTOCOL, { signal })
      const lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES, maxBufferSize: MAX_FRAME_BYTES })
      const { replica } = this.#c
      const digest = this.#stateDigest
      await lp.write(this.#seal({ root: digest.root }), { signal })
      const answer = this.#read(await lp.read({ signal }))
      if ('done' in answer) {
        await stream.close({ signal })
        return
      }
      await lp.write(this.#seal({ digest: [...digest.entries()] }), { signal })
      let merged = 0
      for (;;) {
        const frame = this.#read(await lp.read({ signal }))
        if ('records' in frame) merged += await replica.merge(frame.records, id)
        if ('done' in frame) {
          for (const batch of chunked(this.#lookup(frame.want ?? []))) await lp.write(this.#seal({ records: batch }), { signal })
          await lp.write(this.#seal({ done: true }), { signal })
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
      const hello = this.#read(await lp.read({ signal }))
      if (!('root' in hello)) throw new Error('expected a root')
      if (hello.root === digest.root) {
        await lp.write(this.#seal({ done: true }), { signal })
        await stream.close({ signal })
        return
      }
      await lp.write(this.#seal({ root: digest.root }), { signal })
      const first = this.#read(await lp.read({ signal }))
      if (!('digest' in first)) throw new Error('expected a digest')
      const theirs = new Map(first.digest)
      const send: ReplicatedRecord[] = []
      for (const record of replica.records()) {
        if (theirs.get(slotOf(record)) !== digest.fingerprint(slotOf(record))) send.push(record)
      }
      // Different, not just newer: each side may hold the latest write of a different field.
      const want = [...theirs].filter(([key, fingerprint]) => digest.fingerprint(key) !== fingerprint).map(([key]) => key)
      for (const batch of chunked(send)) await lp.write(this.#seal({ records: batch }), { signal })
      await lp.write(this.#seal({ done: true, want }), { signal })
      for (;;) {
        const frame = this.#read(await lp.read({ signal }))
        if ('records' in frame) await replica.merge(frame.records, connection.remotePeer.toString())
        if ('done' in frame) break
      }
      await stream.close({ signal })
    } catch (err) {
      this.#c.logger.warn({ err, peer: connection.remotePeer.toString() }, 'metadata sync failed')
      stream.abort(err as Error)
    }
  }

  onGossip (event: CustomEvent<Message>): void {
    if (event.detail.topic !== METADATA_TOPIC) return
    const frame = this.#open(event.detail.data)
    if (frame == null || !('records' in frame)) return
    const from = event.detail.type === 'signed' ? event.detail.from.toString() : undefined
    void this.#c.replica.merge(frame.records, from).catch(err => {
      this.#c.logger.warn({ err }, 'merging gossip failed')
    })
  }

  onIdentify (event: CustomEvent<IdentifyResult>): void {
    if (!event.detail.protocols.includes(METADATA_SYNC_PROTOCOL)) return
    this.#request(event.detail.peerId)
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
      for (const batch of chunked(records)) await this.#publish(batch)
    })
  }

  /**
   * Gossips the records, then reconciles at once with every connected peer gossipsub did not
   * send them to: for a moment after a connection opens, gossipsub has no stream to the peer or
   * has not heard its subscription yet, while the sync on connect may already have run.
   */
  async #publish (records: ReplicatedRecord[]): Promise<void> {
    const { libp2p } = this.#c
    let reached = new Set<string>()
    try {
      const { recipients } = await libp2p.services.pubsub.publish(METADATA_TOPIC, this.#seal({ records }))
      reached = new Set(recipients.map(p => p.toString()))
    } catch (err) {
      this.#c.logger.debug({ err }, 'gossip publish failed')
    }
    for (const peer of libp2p.getPeers()) if (!reached.has(peer.toString())) this.#request(peer)
  }

  /** Every connected agent in turn (by peer id order), one per interval. */
  #syncNextPeer (): void {
    const peers = this.#c.libp2p.services.pubsub.getSubscribers(METADATA_TOPIC).sort((x, y) => x.toString().localeCompare(y.toString()))
    if (peers.length === 0) return
    const next = peers.find(p => p.toString() > this.#turn) ?? peers[0]
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

  #seal (frame: Frame): Uint8Array {
    const body = JSON.stringify(frame)
    return Buffer.from(JSON.stringify({ b: body, m: mac(this.#key, body) }))
  }

  #open (bytes: Uint8Array | { subarray: () => Uint8Array }): Frame | undefined {
    try {
      const raw = bytes instanceof Uint8Array ? bytes : bytes.subarray()
      const envelope = JSON.parse(Buffer.from(raw).toString('utf8')) as { b?: unknown, m?: unknown }
      if (typeof envelope.b !== 'string' || typeof envelope.m !== 'string') return undefined
      const expected = Buffer.from(mac(this.#key, envelope.b), 'hex')
      const given = Buffer.from(envelope.m, 'hex')
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
      return JSON.parse(envelope.b) as Frame
    } catch {
      return undefined
    }
  }

  #read (bytes: { subarray: () => Uint8Array }): Frame {
    const frame = this.#open(bytes)
    if (frame == null) throw new Error('unauthenticated or malformed sync frame')
    return frame
  }
}

function mac (key: string, body: string): string {
  return createHmac('sha256', key).update(body).digest('hex')
}

function * chunked<T> (items: T[]): Generator<T[]> {
  for (let i = 0; i < items.length; i += RECORDS_PER_FRAME) yield items.slice(i, i + RECORDS_PER_FRAME)
}
