/**
 * The read-through swarm: `read()` streams an image's bytes in order, from the local chunk store
 * where it can and from peers where it must, and a download session per image (session.ts) keeps
 * fetching until the whole image is local. Which chunk to fetch from whom is the scheduling
 * policy's (scheduling.ts); the swarm holds what sessions share: one fetch per CID, the load per
 * peer, peers that sent bad bytes, connection events, and the HAVE / ANNOUNCE traffic, which it
 * routes to the session of the image.
 *
 * A HAVE request says what this agent holds and that it is downloading, and the answer says the
 * same of the peer, so downloaders that start together learn of each other at once. Holdings then
 * travel as ANNOUNCEs on the chunk protocol (chunk-exchange.ts), sent only to the connected peers
 * known to be downloading the same image: authenticated by the connection (Noise, the peers'
 * libp2p keys), with no signature to check. Signed gossip, which every agent verified once per
 * copy it received, cost more CPU than the chunks' cipher and hash together (docs/benchmarks.md,
 * issue 8).
 *
 * Every chunk from a peer is verified against its CID by the exchange while it arrives (once:
 * `putChunk` is told so); a peer that sends bad bytes is not asked again for `badPeerMs`.
 * Timeouts and errors exclude the peer for that chunk for a while and the chunk is fetched
 * elsewhere. Readers waiting for a chunk no reachable peer holds fail with ChunkUnavailableError
 * after `unavailableTimeoutMs`; no reader ever gets unverified bytes.
 */
import { AbortedError, ChunkUnavailableError, RangeNotSatisfiableError, ShuttingDownError } from '@peerglance/interface'
import type { AbortOptions, ChunkBlocks, ChunkStore, ImageReader, Manifest, Startable } from '@peerglance/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ComponentLogger, Libp2pEvents, Logger, PeerId, TypedEventTarget } from '@libp2p/interface'
import { imageKey } from './chunk-exchange.ts'
import { shareLease } from './chunk-ref.ts'
import type { ChunkRef } from './chunk-ref.ts'
import type { ChunkExchange, HaveAnswer, HaveNote } from './chunk-exchange.ts'
import { HAVE_NONE } from './framing.ts'
import type { HaveSelf } from './framing.ts'
import type { FetchReason } from './scheduling.ts'
import { abortable, realClock, Session } from './session.ts'
import type { Clock, SessionHost, SessionSettings } from './session.ts'
import {
  DEFAULT_ANNOUNCE_INTERVAL_MS, DEFAULT_BACKGROUND_FALLBACK_MS, DEFAULT_BAD_PEER_MS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_PER_PEER,
  DEFAULT_READ_AHEAD, DEFAULT_START_GRACE_MS, DEFAULT_UNAVAILABLE_TIMEOUT_MS, DEFAULT_URGENT_FALLBACK_MS
} from './constants.ts'
import type { MeshMetrics } from './metrics.ts'

export interface SwarmComponents {
  blocks: ChunkBlocks
  /**
   * Streams ranges of images held entirely here (FsChunkStore's `read`: a pool of three reused
   * buffers, one chunk read ahead). Going chunk by chunk through `blocks.readChunk` costs a fresh
   * buffer and an open/stat/close per chunk, and the garbage made GC the top cost of serving
   * local images. Optional: without it, every read goes chunk by chunk.
   */
  local?: Pick<ChunkStore, 'read'>
  exchange: Pick<ChunkExchange, 'getLease' | 'have' | 'forget' | 'announce' | 'peerGone'>
  peerId: PeerId
  events: TypedEventTarget<Libp2pEvents>
  /** Peers with an open connection now. */
  connectedPeers: () => PeerId[]
  metrics: MeshMetrics
  logger: ComponentLogger
}

export interface SwarmInit {
  /** Chunks ahead of each reader fetched first (default 8). */
  readAhead?: number
  /** Fetches in flight per session (default 16) and per peer (default 8). */
  maxInFlight?: number
  maxInFlightPerPeer?: number
  /** A reader waits this long for some peer to hold a chunk, then gets ChunkUnavailableError. */
  unavailableTimeoutMs?: number
  /** Per chunk request (passed to the exchange). */
  requestTimeoutMs?: number
  urgentFallbackMs?: number
  backgroundFallbackMs?: number
  announceIntervalMs?: number
  startGraceMs?: number
  badPeerMs?: number
  /** Keep fetching the rest of an image after its readers are done (default true). */
  fetchWhole?: boolean
  /** Finished sessions remembered, so reads of local images skip the scan (default 256). */
  maxIdleSessions?: number
}

interface Settings extends SessionSettings {
  requestTimeoutMs: number | undefined
  badPeerMs: number
  maxIdleSessions: number
}

function noop (): void {}

/** Images whose `localShare` is kept (the oldest is forgotten first). */
const MAX_KEPT_SHARES = 4096
/** Peer ids kept for fetches (forgotten on disconnect; all at once past this many). */
const MAX_KEPT_PEER_IDS = 4096

/**
 * Streams images from local chunks and peers; implements the ImageReader port. Create it with
 * the node's services, `start()` it after libp2p has started.
 */
export class Swarm implements ImageReader, Startable, SessionHost {
  readonly [Symbol.toStringTag] = '@peerglance/swarm'
  readonly #components: SwarmComponents
  readonly #settings: Settings
  readonly #log: Logger
  readonly #sessions = new Map<string, Session>()
  /** Peers that sent bytes not matching their CID, until when they stay excluded. */
  readonly #bad = new Map<string, number>()
  /** Fetches in flight per peer, over all sessions. */
  readonly #load = new Map<string, number>()
  /** `localShare` of images without a session, by image key, as of a store generation. */
  readonly #shares = new Map<string, { generation: number, share: number }>()
  /**
   * Fetches in flight by CID, over all sessions: one fetch per chunk per agent. `takers` counts
   * the sessions waiting for it, each of which gets a reference to the chunk's lent buffer.
   */
  readonly #fetching = new Map<string, { chunk: Promise<() => ChunkRef>, takers: number }>()
  /**
   * Peer ids by their string, for the fetches: parsing the string back for each chunk (and
   * encoding it again in the exchange) was 2.6 % of a downloader's main thread.
   */
  readonly #peerIds = new Map<string, PeerId>()
  #running = false
  #shutdown = new AbortController()

  constructor (components: SwarmComponents, init: SwarmInit = {}) {
    this.#components = components
    this.#log = components.logger.forComponent('peerglance:swarm')
    this.#settings = {
      readAhead: init.readAhead ?? DEFAULT_READ_AHEAD,
      maxInFlight: init.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      maxInFlightPerPeer: init.maxInFlightPerPeer ?? DEFAULT_MAX_IN_FLIGHT_PER_PEER,
      unavailableTimeoutMs: init.unavailableTimeoutMs ?? DEFAULT_UNAVAILABLE_TIMEOUT_MS,
      requestTimeoutMs: init.requestTimeoutMs,
      urgentFallbackMs: init.urgentFallbackMs ?? DEFAULT_URGENT_FALLBACK_MS,
      backgroundFallbackMs: init.backgroundFallbackMs ?? DEFAULT_BACKGROUND_FALLBACK_MS,
      announceIntervalMs: init.announceIntervalMs ?? DEFAULT_ANNOUNCE_INTERVAL_MS,
      startGraceMs: init.startGraceMs ?? DEFAULT_START_GRACE_MS,
      badPeerMs: init.badPeerMs ?? DEFAULT_BAD_PEER_MS,
      fetchWhole: init.fetchWhole ?? true,
      maxIdleSessions: init.maxIdleSessions ?? 256
    }
    this.onConnect = this.onConnect.bind(this)
    this.onDisconnect = this.onDisconnect.bind(this)
  }

  isStarted (): boolean { return this.#running }

  /** Listens to connection events: call once libp2p has started. */
  async start (): Promise<void> {
    if (this.#running) return
    this.#running = true
    this.#shutdown = new AbortController()
    const { events } = this.#components
    events.addEventListener('peer:connect', this.onConnect)
    events.addEventListener('peer:disconnect', this.onDisconnect)
  }

  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    this.#shutdown.abort()
    const { events } = this.#components
    events.removeEventListener('peer:connect', this.onConnect)
    events.removeEventListener('peer:disconnect', this.onDisconnect)
    const stopping = new ShuttingDownError('The agent is shutting down.')
    await Promise.all([...this.#sessions.values()].map(async session => { await session.close(stopping) }))
    this.#sessions.clear()
    this.#fetching.clear()
    this.#load.clear()
  }

  /** Bytes [start, end] (inclusive) of the image, in order, fetching missing chunks from peers. */
  async * read (imageId: string, manifest: Manifest, start: number, end: number, opts: AbortOptions = {}): AsyncGenerator<Uint8Array> {
    const { size, chunkSize, cids } = manifest
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`manifest chunk size ${chunkSize} is not a positive integer`)
    if (end < start) return
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end >= size) {
      throw new RangeNotSatisfiableError(`Requested range ${start}-${end} is not within the image's ${size} bytes.`)
    }
    if (cids.length !== Math.ceil(size / chunkSize)) throw new RangeError(`manifest lists ${cids.length} chunks for ${size} bytes`)
    if (!this.#running) throw new ShuttingDownError('The agent is not running.')
    const session = this.#session(imageId, manifest)
    const local = this.#components.local
    if (local != null) {
      // Whether every chunk is here is only known after the scan (a few ms; once per session).
      if (!session.scanned) await abortable(session.scanning, opts.signal)
      if (session.complete) {
        start = yield * this.#readLocal(local, manifest, start, end, opts)
        if (start > end) return
      }
    }
    yield * this.#readChunks(session, manifest, start, end, opts)
  }

  /**
   * Bytes [start, end] of an image the session found complete, straight from the local store.
   * Returns end + 1, or where it stopped because a chunk went away since the scan (collected):
   * the chunk-by-chunk path takes over from there and fetches it again.
   */
  async * #readLocal (local: Pick<ChunkStore, 'read'>, manifest: Manifest, start: number, end: number, opts: AbortOptions): AsyncGenerator<Uint8Array, number> {
    const { chunkSize } = manifest
    const { metrics } = this.#components
    const last = Math.floor(end / chunkSize)
    let position = start
    let counted = Math.floor(start / chunkSize)
    try {
      for await (const bytes of local.read(manifest, start, end, opts)) {
        position += bytes.byteLength
        // A cache hit per chunk passed, as the chunk-by-chunk path counts them.
        const done = position > end ? last + 1 : Math.floor(position / chunkSize)
        for (; counted < done; counted++) metrics.hit()
        yield bytes
      }
    } catch (err) {
      if ((err as Error).name !== 'ChunkUnavailableError') throw err
      this.#log('local read of %s stopped at byte %d, going on chunk by chunk - %e', manifest.cids[Math.floor(position / chunkSize)], position, err)
    }
    return position
  }

  /**
   * Bytes [start, end], chunk by chunk, each from the store or fetched from a peer. A chunk's
   * bytes may sit in a buffer reused for another chunk once released (session.ts, chunk-ref.ts):
   * each is held until the consumer asks for the chunk after next, as the ImageReader port allows.
   */
  async * #readChunks (session: Session, manifest: Manifest, start: number, end: number, opts: AbortOptions): AsyncGenerator<Uint8Array> {
    const { size, chunkSize, cids } = manifest
    const first = Math.floor(start / chunkSize)
    const last = Math.floor(end / chunkSize)
    const reader = session.addReader(first, last)
    const ahead = new Map<number, Promise<ChunkRef>>()
    const held: ChunkRef[] = []
    const get = (index: number): Promise<ChunkRef> => {
      let got = ahead.get(index)
      if (got == null) {
        got = session.chunk(index, opts.signal)
        got.catch(noop)
        ahead.set(index, got)
      }
      return got
    }
    try {
      for (let index = first; index <= last; index++) {
        if (opts.signal?.aborted === true) throw new AbortedError('The download was aborted.', { cause: opts.signal.reason })
        reader.at(index)
        const current = get(index)
        // One chunk ahead: overlaps the next local read with the consumer's write.
        if (index < last) get(index + 1)
        const chunk = await current
        ahead.delete(index)
        held.push(chunk)
        const { bytes } = chunk
        const base = index * chunkSize
        const length = Math.min(chunkSize, size - base)
        if (bytes.byteLength !== length) throw new ChunkUnavailableError(`Chunk ${cids[index]} is ${bytes.byteLength} bytes where the manifest says ${length}.`)
        const from = Math.max(start - base, 0)
        const to = Math.min(end - base, length - 1)
        yield from === 0 && to === length - 1 ? bytes : bytes.subarray(from, to + 1)
        // The consumer asked for the next chunk: the one before this is free to go.
        if (held.length > 1) held.shift()?.release()
      }
    } finally {
      session.removeReader(reader)
      for (const chunk of held) chunk.release()
      for (const got of ahead.values()) got.then(chunk => { chunk.release() }, noop)
    }
  }

  /**
   * The share (0..1) of the image's chunks held locally. Asked per image by status, coverage,
   * holdings answers and the cache: without a session it checks every chunk file, so the answer
   * is kept while the store's `generation` stays (a 10 GiB image is 10,240 files).
   */
  async localShare (manifest: Manifest): Promise<number> {
    const n = manifest.cids.length
    if (n === 0) return 1
    const key = imageKey(manifest.cids)
    const session = this.#sessions.get(key)
    if (session?.scanned === true) return session.localCount / n
    const { blocks } = this.#components
    const generation = blocks.generation
    const known = this.#shares.get(key)
    if (known != null && generation != null && known.generation === generation) return known.share
    const unique = [...new Set(manifest.cids)]
    const held = new Set<string>()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < unique.length) {
        const cid = unique[next++]
        if (await this.#components.blocks.has(cid)) held.add(cid)
      }
    }
    await Promise.all(Array.from({ length: Math.min(16, unique.length) }, worker))
    // A chunk repeated in an image (zeros) counts once per occurrence.
    let count = 0
    for (const cid of manifest.cids) if (held.has(cid)) count++
    const share = count / n
    if (generation != null && blocks.generation === generation) {
      this.#shares.delete(key)
      this.#shares.set(key, { generation, share })
      if (this.#shares.size > MAX_KEPT_SHARES) this.#shares.delete(this.#shares.keys().next().value as string)
    }
    return share
  }

  /**
   * The exchange's HaveHandler: a HAVE request tells the session of that image (if any) what the
   * asker holds, and gets the session's state and, once it scanned the store, its bitfield.
   */
  asked (peer: PeerId, key: string, note: HaveNote): HaveSelf & { bits?: Uint8Array } {
    const session = this.#sessions.get(key)
    if (session == null) return { state: HAVE_NONE }
    if (!this.isBad(peer.toString())) session.heard(peer, note)
    return { ...session.self, bits: session.scanned ? session.localBits : undefined }
  }

  announced (peer: PeerId, key: string, note: HaveNote): void {
    if (!this.#running || this.isBad(peer.toString())) return
    this.#sessions.get(key)?.heard(peer, note)
  }

  /** Internal state of every session, for debugging. */
  debugState (): unknown[] {
    return [...this.#sessions.values()].map(s => s.debugState())
  }

  /** Sessions in progress, for status pages and tests. */
  sessions (): Array<{ imageId: string, key: string, held: number, chunks: number, complete: boolean }> {
    return [...this.#sessions.values()].map(s => ({ imageId: s.imageId, key: s.key, held: s.localCount, chunks: s.n, complete: s.complete }))
  }

  #session (imageId: string, manifest: Manifest): Session {
    const key = imageKey(manifest.cids)
    let session = this.#sessions.get(key)
    if (session == null) {
      session = new Session(this, imageId, key, manifest)
      this.#sessions.set(key, session)
      this.#trimSessions()
      session.begin()
    }
    return session
  }

  /**
   * Stops downloading an image and forgets its session (the image was deleted here): chunks
   * already stored stay until the chunk store collects them.
   */
  async abandon (imageId: string): Promise<void> {
    for (const [key, session] of this.#sessions) {
      if (session.imageId !== imageId) continue
      this.#sessions.delete(key)
      await session.close(new ChunkUnavailableError(`Image ${imageId} is gone.`))
    }
  }

  /** Called by a session that gave up. */
  dropSession (session: Session): void {
    if (this.#sessions.get(session.key) === session) this.#sessions.delete(session.key)
  }

  /** Forgets the oldest finished sessions without readers beyond `maxIdleSessions`. */
  #trimSessions (): void {
    let idle = 0
    for (const s of this.#sessions.values()) if (s.complete && s.readers === 0) idle++
    for (const [key, s] of this.#sessions) {
      if (idle <= this.#settings.maxIdleSessions) break
      if (s.complete && s.readers === 0) {
        this.#sessions.delete(key)
        void s.close(new ShuttingDownError('session dropped'))
        idle--
      }
    }
  }

  // --- the sessions' host (SessionHost) ---------------------------------------------------------

  get settings (): Settings { return this.#settings }
  get clock (): Clock { return realClock }
  get log (): Logger { return this.#log }
  get signal (): AbortSignal { return this.#shutdown.signal }
  get self (): string { return this.#components.peerId.toString() }
  get blocks (): ChunkBlocks { return this.#components.blocks }
  get metrics (): MeshMetrics { return this.#components.metrics }

  connectedPeers (): PeerId[] {
    return this.#components.connectedPeers()
  }

  async have (peer: PeerId, key: string, cids: readonly string[], mine: HaveSelf & { bits: Uint8Array }): Promise<HaveAnswer> {
    return await this.#components.exchange.have(peer, key, cids, mine, { signal: this.#shutdown.signal, timeoutMs: 10_000 })
  }

  /**
   * Fetches started, by scheduling step and by kind of source (`from-downloader` or `from-seed`):
   * where seed egress comes from, for tests and benchmarks.
   */
  readonly fetchReasons: Record<string, number> = {}
  /** Fetches that failed, by the same key and the error (`mine/from-seed/SentElsewhereError`). */
  readonly fetchFailures: Record<string, number> = {}

  isBad (peer: string): boolean {
    const until = this.#bad.get(peer)
    if (until == null) return false
    if (until > Date.now()) return true
    this.#bad.delete(peer)
    return false
  }

  markBad (peer: string): void {
    this.#bad.set(peer, Date.now() + this.#settings.badPeerMs)
    this.#components.metrics.totals.badChunks++
    this.#components.exchange.forget(peer)
    for (const session of this.#sessions.values()) session.dropPeer(peer)
  }

  /**
   * After a failed fetch: a peer we have no connection to is treated as disconnected in every
   * session, as if 'peer:disconnect' had come. That event never comes for a peer that was
   * marked connected by a late gossip message (relayed by others) after it died, and each
   * failed dial excludes the peer for one chunk only.
   */
  checkReachable (peer: string): void {
    if (this.#components.connectedPeers().some(id => id.toString() === peer)) return
    for (const session of this.#sessions.values()) session.peerDisconnected(peer)
  }

  load (peer: string): number {
    return this.#load.get(peer) ?? 0
  }

  #addLoad (peer: string, delta: number): void {
    const value = (this.#load.get(peer) ?? 0) + delta
    if (value <= 0) this.#load.delete(peer)
    else this.#load.set(peer, value)
  }

  /**
   * One fetch per CID at a time: a second asker shares the first fetch. Each asker gets its own
   * reference to the chunk and releases it once.
   */
  fetch (cid: string, peer: string, reason: FetchReason, fromDownloader: boolean): { promise: Promise<ChunkRef>, shared: boolean } {
    const existing = this.#fetching.get(cid)
    if (existing != null) {
      existing.takers++
      return { promise: existing.chunk.then(take => take()), shared: true }
    }
    const kind = `${reason}/${fromDownloader ? 'from-downloader' : 'from-seed'}`
    this.fetchReasons[kind] = (this.fetchReasons[kind] ?? 0) + 1
    this.#addLoad(peer, 1)
    const started = performance.now()
    const entry = { chunk: undefined as unknown as Promise<() => ChunkRef>, takers: 1 }
    const done = (): void => {
      this.#addLoad(peer, -1)
      if (this.#fetching.get(cid) === entry) this.#fetching.delete(cid)
    }
    entry.chunk = this.#components.exchange.getLease(this.#peerId(peer), cid, {
      signal: this.#shutdown.signal,
      timeoutMs: this.#settings.requestTimeoutMs,
      once: !fromDownloader
    }).then(lease => {
      this.#components.metrics.fetched((performance.now() - started) / 1000)
      // Nobody can join once it is gone from #fetching, so the takers are counted.
      done()
      return shareLease(lease, entry.takers)
    }, err => {
      done()
      const failure = `${kind}/${(err as Error).name}`
      this.fetchFailures[failure] = (this.fetchFailures[failure] ?? 0) + 1
      throw err
    })
    this.#fetching.set(cid, entry)
    return { promise: entry.chunk.then(take => take()), shared: false }
  }

  #peerId (peer: string): PeerId {
    let id = this.#peerIds.get(peer)
    if (id == null) {
      if (this.#peerIds.size >= MAX_KEPT_PEER_IDS) this.#peerIds.clear()
      id = peerIdFromString(peer)
      this.#peerIds.set(peer, id)
    }
    return id
  }

  /** Sends an ANNOUNCE; a peer that cannot take it hears the state again with our next HAVE. */
  announce (peer: PeerId, key: string, note: HaveSelf & { total: number, indices: readonly number[] }): void {
    if (!this.#running) return
    this.#components.exchange.announce(peer, key, note, { signal: this.#shutdown.signal }).catch(err => {
      this.#log('could not announce holdings to %p - %e', peer, err)
    })
  }

  // --- events -----------------------------------------------------------------------------------

  private onConnect (evt: CustomEvent<PeerId>): void {
    for (const session of this.#sessions.values()) session.peerConnected(evt.detail)
  }

  private onDisconnect (evt: CustomEvent<PeerId>): void {
    const peer = evt.detail.toString()
    this.#peerIds.delete(peer)
    this.#components.exchange.peerGone(peer)
    for (const session of this.#sessions.values()) session.peerDisconnected(peer)
  }
}
