/**
 * The read-through swarm: `read()` streams an image's bytes in order, from the local chunk store
 * where it can and from peers where it must, and a download session per image keeps fetching
 * until the whole image is local.
 *
 * Scheduling, per session (one per image, shared by all readers of it):
 * 1. Chunks within `readAhead` of a reader's position come first, closest first.
 * 2. Then chunks another downloader of the same image has announced, rarest first (among a
 *    sample, random tie-break), so downloaders feed each other.
 * 3. Then chunks this agent is responsible for, in image order, from a seed.
 * 4. Chunks whose responsible downloader has gone quiet for `backgroundFallbackMs`: from any holder.
 *
 * Seeding ("the seed sends about one copy"): holders are split into downloaders (peers that
 * announced a download of this image in this session) and seeds (everyone else). A chunk that
 * only seeds hold is fetched by ONE downloader, the one that ranks first for it by rendezvous
 * hashing over the current downloaders; the others wait for its announcement and fetch it from
 * that downloader. A chunk a reader waits for falls back to a seed when its downloader has
 * announced nothing for `urgentFallbackMs` (it is stuck or gone), or after `backgroundFallbackMs`
 * of waiting in any case; other chunks when it has been silent for `backgroundFallbackMs`. A slow
 * but live downloader is waited for: every agent is then limited by the seed's upload anyway.
 * A session asks every connected peer with a HAVE request when it starts and when a peer
 * connects; the request says what this agent holds and that it is downloading, and the answer
 * says the same of the peer. Downloaders thus learn of each other at session start, and a
 * session waits `startGraceMs` before it asks seeds for chunks nobody is waiting for.
 *
 * Holdings then travel as ANNOUNCEs on the chunk protocol (chunk-exchange.ts), sent only to the
 * connected peers known to be downloading the same image: the indices stored since the last one,
 * batched every `announceIntervalMs`, and the state (1 downloading, 2 holds it all). They are
 * authenticated by the connection (Noise, the peers' libp2p keys) and cost no signature; signed
 * gossip, which every agent verified once per copy it received, cost more CPU than the chunks'
 * cipher and hash together (docs/benchmarks.md, issue 8).
 *
 * Every chunk from a peer is verified against its CID by the exchange while it arrives (once:
 * `putChunk` is told so and does not hash it again); a peer that sends bad bytes is not asked
 * again for `badPeerMs`. Timeouts and errors exclude the peer for that chunk for a while and the
 * chunk is fetched elsewhere. Readers waiting for a chunk no reachable peer holds fail with
 * ChunkUnavailableError after `unavailableTimeoutMs`; no reader ever gets unverified bytes.
 */
import { AbortedError, ChunkUnavailableError, RangeNotSatisfiableError, ShuttingDownError } from '@peerglance/interface'
import type { AbortOptions, ChunkBlocks, ChunkStore, ImageReader, Manifest, Startable } from '@peerglance/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ComponentLogger, Libp2pEvents, Logger, PeerId, TypedEventTarget } from '@libp2p/interface'
import { HAVE_COMPLETE, HAVE_DOWNLOADING, HAVE_NONE, imageKey } from './chunk-exchange.ts'
import type { ChunkExchange, HaveNote, HaveState } from './chunk-exchange.ts'
import {
  DEFAULT_ANNOUNCE_INTERVAL_MS, DEFAULT_BACKGROUND_FALLBACK_MS, DEFAULT_BAD_PEER_MS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_PER_PEER,
  DEFAULT_READ_AHEAD, DEFAULT_START_GRACE_MS, DEFAULT_UNAVAILABLE_TIMEOUT_MS, DEFAULT_URGENT_FALLBACK_MS
} from './constants.ts'
import { getBit, setBit } from './framing.ts'
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
  exchange: Pick<ChunkExchange, 'get' | 'have' | 'forget' | 'announce'>
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

interface Settings {
  readAhead: number
  maxInFlight: number
  maxInFlightPerPeer: number
  unavailableTimeoutMs: number
  requestTimeoutMs: number | undefined
  urgentFallbackMs: number
  backgroundFallbackMs: number
  announceIntervalMs: number
  startGraceMs: number
  badPeerMs: number
  fetchWhole: boolean
  maxIdleSessions: number
}

/** How long a peer that failed a chunk (timeout, error) is not asked for it again. */
const CHUNK_FAILURE_MS = 30_000
/** Session timer: fallbacks, waits for sources, batched announcements. */
const TICK_MS = 50
/** Candidates compared for rarity per pick among announced chunks. */
const RARITY_SAMPLE = 16
/** HAVE queries a session repeats while readers wait for chunks nobody is known to hold. */
const REQUERY_MS = 1_000
/** A background download with no reader that got nothing for this long gives up (a new read restarts it). */
const IDLE_SESSION_MS = 60_000

function noop (): void {}

/**
 * Streams images from local chunks and peers; implements the ImageReader port. Create it with
 * the node's services, `start()` it after libp2p has started.
 */
export class Swarm implements ImageReader, Startable {
  readonly [Symbol.toStringTag] = '@peerglance/swarm'
  readonly #components: SwarmComponents
  readonly #settings: Settings
  readonly #log: Logger
  readonly #sessions = new Map<string, Session>()
  /** Peers that sent bytes not matching their CID, until when they stay excluded. */
  readonly #bad = new Map<string, number>()
  /** Fetches in flight per peer, over all sessions. */
  readonly #load = new Map<string, number>()
  /** Fetches in flight by CID, over all sessions: one fetch per chunk per agent. */
  readonly #fetching = new Map<string, Promise<Uint8Array>>()
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

  /** Bytes [start, end], chunk by chunk, each from the store or fetched from a peer. */
  async * #readChunks (session: Session, manifest: Manifest, start: number, end: number, opts: AbortOptions): AsyncGenerator<Uint8Array> {
    const { size, chunkSize, cids } = manifest
    const first = Math.floor(start / chunkSize)
    const last = Math.floor(end / chunkSize)
    const reader = session.addReader(first, last)
    const ahead = new Map<number, Promise<Uint8Array>>()
    const get = (index: number): Promise<Uint8Array> => {
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
        const bytes = await current
        ahead.delete(index)
        const base = index * chunkSize
        const length = Math.min(chunkSize, size - base)
        if (bytes.byteLength !== length) throw new ChunkUnavailableError(`Chunk ${cids[index]} is ${bytes.byteLength} bytes where the manifest says ${length}.`)
        const from = Math.max(start - base, 0)
        const to = Math.min(end - base, length - 1)
        yield from === 0 && to === length - 1 ? bytes : bytes.subarray(from, to + 1)
      }
    } finally {
      session.removeReader(reader)
    }
  }

  /** The share (0..1) of the image's chunks held locally. */
  async localShare (manifest: Manifest): Promise<number> {
    const n = manifest.cids.length
    if (n === 0) return 1
    const session = this.#sessions.get(imageKey(manifest.cids))
    if (session?.scanned === true) return session.localCount / n
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
    return count / n
  }

  /**
   * The exchange's HaveHandler: a HAVE request tells the session of that image (if any) what the
   * asker holds, and gets the session's state and, once it scanned the store, its bitfield.
   */
  asked (peer: PeerId, key: string, note: HaveNote): { state: HaveState, bits?: Uint8Array } {
    const session = this.#sessions.get(key)
    if (session == null) return { state: HAVE_NONE }
    if (!this.isBad(peer.toString())) session.heard(peer, note)
    return { state: session.complete ? HAVE_COMPLETE : HAVE_DOWNLOADING, bits: session.scanned ? session.localBits : undefined }
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

  // --- services for sessions ------------------------------------------------------------------

  get settings (): Settings { return this.#settings }
  get components (): SwarmComponents { return this.#components }
  get log (): Logger { return this.#log }
  get signal (): AbortSignal { return this.#shutdown.signal }
  get self (): string { return this.#components.peerId.toString() }

  /**
   * Fetches started, by scheduling step and by kind of source (`from-downloader` or `from-seed`):
   * where seed egress comes from, for tests and benchmarks.
   */
  readonly fetchReasons: Record<string, number> = {}

  counted (reason: string, fromDownloader: boolean): void {
    const key = `${reason}/${fromDownloader ? 'from-downloader' : 'from-seed'}`
    this.fetchReasons[key] = (this.fetchReasons[key] ?? 0) + 1
  }

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

  addLoad (peer: string, delta: number): void {
    const value = (this.#load.get(peer) ?? 0) + delta
    if (value <= 0) this.#load.delete(peer)
    else this.#load.set(peer, value)
  }

  /** One fetch per CID at a time: a second asker gets the first fetch's promise. */
  fetch (cid: string, peer: string): { promise: Promise<Uint8Array>, shared: boolean } {
    const existing = this.#fetching.get(cid)
    if (existing != null) return { promise: existing, shared: true }
    const started = performance.now()
    const promise = this.#components.exchange.get(peerIdFromString(peer), cid, {
      signal: this.#shutdown.signal,
      timeoutMs: this.#settings.requestTimeoutMs
    }).then(bytes => {
      this.#components.metrics.fetched((performance.now() - started) / 1000)
      return bytes
    })
    this.#fetching.set(cid, promise)
    const done = (): void => { if (this.#fetching.get(cid) === promise) this.#fetching.delete(cid) }
    promise.then(done, done)
    return { promise, shared: false }
  }

  /** Sends an ANNOUNCE; a peer that cannot take it hears the state again with our next HAVE. */
  announce (peer: PeerId, key: string, note: { state: HaveState, total: number, indices: readonly number[] }): void {
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
    for (const session of this.#sessions.values()) session.peerDisconnected(peer)
  }
}

/** Why a chunk was fetched (scheduling step), for `Swarm.fetchReasons`. */
type FetchReason = 'urgent' | 'urgent-mine' | 'urgent-owner-quiet' | 'urgent-waited' | 'announced' | 'mine' | 'owner-quiet'

/** What this agent knows of one peer's holdings of one image. */
interface PeerState {
  id: PeerId
  bits: Uint8Array
  /** 1: downloading this image now; 2: holds all of it; 0: holds some, not downloading. */
  state: HaveState
  /** It announced a download of this image at some time in this session. */
  downloader: boolean
  connected: boolean
  /** When it last told us anything about this image (gossip or a HAVE answer). */
  lastHeard: number
}

interface Waiter {
  resolve: (bytes: Uint8Array) => void
  reject: (err: Error) => void
  since: number
  /** Since when no usable peer holds the chunk (for ChunkUnavailableError). */
  noSourceSince?: number
}

interface Fetch {
  promise: Promise<Uint8Array>
  peer?: string
}

export class ReaderCursor {
  position: number
  readonly last: number
  readonly #session: Session

  constructor (session: Session, first: number, last: number) {
    this.position = first
    this.last = last
    this.#session = session
  }

  at (index: number): void {
    this.position = index
    this.#session.pump()
  }
}

/** A download session: one image, any number of readers, one set of fetches. */
class Session {
  readonly swarm: Swarm
  readonly imageId: string
  readonly key: string
  readonly manifest: Manifest
  readonly n: number
  readonly #local: Uint8Array
  localCount = 0
  scanned = false
  /** Settles (never rejects) when the scan of the local store is over; `scanned` says if it worked. */
  scanning: Promise<void> = Promise.resolve()
  complete = false
  readers = 0
  readonly #cursors = new Set<ReaderCursor>()
  readonly #peers = new Map<string, PeerState>()
  readonly #inflight = new Map<number, Fetch>()
  readonly #waiters = new Map<number, Waiter[]>()
  readonly #failed = new Map<number, Map<string, number>>()
  /** Indices announced by downloaders and not yet held here. */
  readonly #available = new Set<number>()
  /** When each wanted chunk first came within a reader's window. */
  readonly #urgentSince = new Map<number, number>()
  readonly #announce: number[] = []
  #lastAnnounce = 0
  #ownedScan = 0
  #fallbackScan = 0
  #started = 0
  #lastQuery = 0
  #lastProgress = 0
  #timer: NodeJS.Timeout | undefined
  #closed: Error | undefined
  #pumping = false
  #networkStarted = false
  #pumpAgain = false
  #downloaders: string[] = []
  readonly #peerHash = new Map<string, number>()

  constructor (swarm: Swarm, imageId: string, key: string, manifest: Manifest) {
    this.swarm = swarm
    this.imageId = imageId
    this.key = key
    this.manifest = manifest
    this.n = manifest.cids.length
    this.#local = new Uint8Array(Math.ceil(this.n / 8))
  }

  get #log (): Logger { return this.swarm.log }

  /** The bitfield of chunks held here (read only; for HAVE answers). */
  get localBits (): Uint8Array { return this.#local }

  #state (): HaveState {
    return this.complete ? HAVE_COMPLETE : HAVE_DOWNLOADING
  }

  /** Tells the connected peers downloading this image what we stored (`indices`) and our state. */
  #announceTo (indices: readonly number[]): void {
    const note = { state: this.#state(), total: this.n, indices }
    for (const [key, peer] of this.#peers) {
      if (peer.connected && peer.state === HAVE_DOWNLOADING && !this.swarm.isBad(key)) this.swarm.announce(peer.id, this.key, note)
    }
  }

  /** Scans the local store, then (if anything is missing) announces itself and asks peers. */
  begin (): void {
    this.#started = Date.now()
    this.scanning = this.#scan().catch(err => {
      this.#log.error('scan of local chunks failed - %e', err)
    })
  }

  async #scan (): Promise<void> {
    const { blocks } = this.swarm.components
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < this.n) {
        const i = next++
        if (!getBit(this.#local, i) && await blocks.has(this.manifest.cids[i])) this.#markLocal(i, false)
      }
    }
    await Promise.all(Array.from({ length: Math.min(16, this.n) }, worker))
    this.scanned = true
    if (this.#closed != null) return
    if (this.localCount === this.n) {
      this.complete = true
      return
    }
    this.#startNetwork()
  }

  #startNetwork (): void {
    if (this.#closed != null || this.#timer != null) return
    this.#networkStarted = true
    this.#lastProgress = Date.now()
    this.#started = Date.now()
    this.#recomputeOwners()
    this.#timer = setInterval(() => { this.#tick() }, TICK_MS)
    this.#timer.unref()
    this.#queryAll()
    this.pump()
  }

  /** Stops fetching; readers waiting get `err`. */
  async close (err: Error): Promise<void> {
    this.#closed ??= err
    clearInterval(this.#timer)
    this.#timer = undefined
    for (const [, waiters] of this.#waiters) for (const w of waiters) w.reject(err)
    this.#waiters.clear()
    await Promise.allSettled([...this.#inflight.values()].map(async f => await f.promise))
  }

  debugState (): Record<string, unknown> {
    return {
      imageId: this.imageId,
      local: this.localCount,
      n: this.n,
      inflight: [...this.#inflight.entries()].map(([i, f]) => `${i}@${f.peer?.slice(-6) ?? 'shared'}`),
      waiters: [...this.#waiters.keys()],
      cursors: [...this.#cursors].map(c => c.position),
      peers: [...this.#peers.entries()].map(([k, p]) => ({ peer: k.slice(-6), state: p.state, downloader: p.downloader, connected: p.connected, held: p.bits.reduce((n, b) => n + popcount(b), 0), load: this.swarm.load(k), bad: this.swarm.isBad(k) })),
      failed: [...this.#failed.entries()].map(([i, m]) => `${i}:${[...m.keys()].map(k => k.slice(-6)).join(',')}`),
      downloaders: this.#downloaders.map(d => d.slice(-6)),
      ownedScan: this.#ownedScan
    }
  }

  addReader (first: number, last: number): ReaderCursor {
    const cursor = new ReaderCursor(this, first, last)
    this.#cursors.add(cursor)
    this.readers++
    return cursor
  }

  removeReader (cursor: ReaderCursor): void {
    if (this.#cursors.delete(cursor)) this.readers--
  }

  /** The verified bytes of chunk `index`: local, shared with a fetch in flight, or fetched. */
  async chunk (index: number, signal?: AbortSignal): Promise<Uint8Array> {
    const { metrics, blocks } = this.swarm.components
    const cid = this.manifest.cids[index]
    if (!this.#inflight.has(index) && (getBit(this.#local, index) || !this.scanned)) {
      try {
        const bytes = await blocks.readChunk(cid, { signal })
        if (!getBit(this.#local, index)) this.#markLocal(index, false)
        metrics.hit()
        return bytes
      } catch (err) {
        if ((err as Error).name !== 'ChunkUnavailableError') throw err
        // Gone since the scan (collected): fetch it again.
        this.#unmarkLocal(index)
      }
    }
    metrics.miss()
    while (true) {
      if (this.#closed != null) throw this.#closed
      const inflight = this.#inflight.get(index)
      if (inflight == null) break
      try {
        return await abortable(inflight.promise, signal)
      } catch (err) {
        if (signal?.aborted === true || this.#closed != null) throw err
        // That fetch failed; the session has already retried elsewhere, or will: look again.
        await Promise.resolve()
      }
    }
    if (getBit(this.#local, index)) return await blocks.readChunk(cid, { signal })
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>()
    const waiter: Waiter = { resolve, reject, since: Date.now() }
    let list = this.#waiters.get(index)
    if (list == null) this.#waiters.set(index, list = [])
    list.push(waiter)
    if (this.scanned) this.#startNetwork()
    this.pump()
    try {
      return await abortable(promise, signal)
    } finally {
      const waiting = this.#waiters.get(index)
      if (waiting != null) {
        const at = waiting.indexOf(waiter)
        if (at >= 0) waiting.splice(at, 1)
        if (waiting.length === 0) this.#waiters.delete(index)
      }
    }
  }

  // --- what peers hold --------------------------------------------------------------------------

  /** What a peer told us of its holdings: in a HAVE request it sent, or in an ANNOUNCE. */
  heard (from: PeerId, note: HaveNote): void {
    if (note.total !== this.n || this.#closed != null) return
    const peer = this.#peer(from)
    peer.lastHeard = Date.now()
    const wasDownloader = peer.state === HAVE_DOWNLOADING
    if (note.state === HAVE_COMPLETE) {
      peer.bits.fill(0xff)
      peer.state = HAVE_COMPLETE
    } else {
      peer.state = note.state === HAVE_DOWNLOADING ? HAVE_DOWNLOADING : HAVE_NONE
    }
    if (peer.state === HAVE_DOWNLOADING) peer.downloader = true
    if (note.bits != null) {
      const at = (note.from ?? 0) / 8
      const length = Math.min(note.bits.byteLength, peer.bits.byteLength - at)
      for (let b = 0; b < length; b++) peer.bits[at + b] |= note.bits[b]
    }
    if (note.indices != null) {
      for (const i of note.indices) if (i < this.n) setBit(peer.bits, i)
    }
    this.#noteAvailable(peer, note.state === HAVE_COMPLETE || note.bits != null ? undefined : note.indices)
    // New holdings may make chunks the scans passed over (no holder then) fetchable now.
    this.#ownedScan = 0
    if (wasDownloader !== (peer.state === HAVE_DOWNLOADING)) this.#recomputeOwners()
    this.pump()
  }

  peerConnected (id: PeerId): void {
    // What it held before still counts; the HAVE query below brings it up to date.
    const known = this.#peers.get(id.toString())
    if (known != null && !known.connected) {
      known.connected = true
      if (known.state === HAVE_DOWNLOADING) this.#recomputeOwners()
    }
    if (this.#timer == null || this.complete) return
    void this.#query(id)
  }

  peerDisconnected (peer: string): void {
    const state = this.#peers.get(peer)
    if (state == null || !state.connected) return
    state.connected = false
    if (state.state === HAVE_DOWNLOADING) this.#recomputeOwners()
  }

  dropPeer (peer: string): void {
    this.#peers.delete(peer)
    this.#recomputeOwners()
  }

  #peer (id: PeerId): PeerState {
    const key = id.toString()
    let peer = this.#peers.get(key)
    if (peer == null) {
      peer = { id, bits: new Uint8Array(this.#local.byteLength), state: HAVE_NONE, downloader: false, connected: true, lastHeard: Date.now() }
      this.#peers.set(key, peer)
    }
    peer.connected = true
    return peer
  }

  #queryAll (): void {
    this.#lastQuery = Date.now()
    for (const id of this.swarm.components.connectedPeers()) void this.#query(id)
  }

  async #query (id: PeerId): Promise<void> {
    const key = id.toString()
    if (this.swarm.isBad(key)) return
    try {
      const mine = { state: this.#state(), bits: this.#local }
      const answer = await this.swarm.components.exchange.have(id, this.key, this.manifest.cids, mine, { signal: this.swarm.signal, timeoutMs: 10_000 })
      if (this.#closed != null || this.swarm.isBad(key)) return
      const peer = this.#peer(id)
      peer.lastHeard = Date.now()
      const wasDownloader = peer.state === HAVE_DOWNLOADING
      for (let b = 0; b < answer.bits.byteLength; b++) peer.bits[b] |= answer.bits[b]
      peer.state = answer.state
      if (answer.state === HAVE_DOWNLOADING) peer.downloader = true
      this.#noteAvailable(peer)
      this.#ownedScan = 0
      if (wasDownloader !== (peer.state === HAVE_DOWNLOADING)) this.#recomputeOwners()
      this.pump()
    } catch (err) {
      this.#log('HAVE query to %s failed - %e', key, err)
    }
  }

  /** Chunks a downloader holds and we lack go to the "available" set (scheduling step 2). */
  #noteAvailable (peer: PeerState, indices?: number[]): void {
    if (!peer.downloader) return
    if (indices != null) {
      for (const i of indices) if (i >= 0 && i < this.n && !getBit(this.#local, i)) this.#available.add(i)
      return
    }
    for (let i = 0; i < this.n; i++) {
      if (getBit(peer.bits, i) && !getBit(this.#local, i)) this.#available.add(i)
    }
  }

  // --- ownership (seeding) -------------------------------------------------------------------

  /** The downloaders that share out first fetches from seeds: connected peers downloading now, and us. */
  #recomputeOwners (): void {
    const list = [this.swarm.self]
    for (const [key, peer] of this.#peers) {
      if (peer.state === HAVE_DOWNLOADING && peer.connected && !this.swarm.isBad(key)) list.push(key)
    }
    list.sort()
    const changed = list.length !== this.#downloaders.length || list.some((p, i) => p !== this.#downloaders[i])
    this.#downloaders = list
    if (changed) this.#ownedScan = 0
  }

  #hashOf (peer: string): number {
    let h = this.#peerHash.get(peer)
    if (h == null) {
      h = fnv1a(`${this.key}/${peer}`)
      this.#peerHash.set(peer, h)
    }
    return h
  }

  /** Rendezvous hashing: the downloader with the highest score for the chunk fetches it from a seed. */
  #ownerOf (index: number): string {
    if (this.#downloaders.length <= 1) return this.swarm.self
    let best = -1
    let owner = ''
    for (const peer of this.#downloaders) {
      const score = mix(this.#hashOf(peer) ^ Math.imul(index + 1, 0x9e3779b1))
      if (score > best || (score === best && peer < owner)) {
        best = score
        owner = peer
      }
    }
    return owner
  }

  #isMine (index: number): boolean {
    return this.#ownerOf(index) === this.swarm.self
  }

  /** How long the chunk's responsible downloader has said nothing (0 when it is us). */
  #ownerSilence (index: number, now: number): number {
    const owner = this.#ownerOf(index)
    if (owner === this.swarm.self) return 0
    const peer = this.#peers.get(owner)
    return peer == null ? Infinity : now - peer.lastHeard
  }

  // --- scheduling --------------------------------------------------------------------------------

  /** Dispatches fetches while there is room; cheap to call often. */
  pump (): void {
    if (this.#closed != null || !this.scanned || this.complete || this.#timer == null) return
    if (this.#pumping) {
      this.#pumpAgain = true
      return
    }
    this.#pumping = true
    try {
      do {
        this.#pumpAgain = false
        while (this.#inflight.size < this.swarm.settings.maxInFlight) {
          const pick = this.#pick()
          if (pick == null) break
          this.#dispatch(pick.index, pick.peer, pick.reason)
        }
      } while (this.#pumpAgain)
    } finally {
      this.#pumping = false
    }
  }

  #wanted (index: number): boolean {
    return index >= 0 && index < this.n && !getBit(this.#local, index) && !this.#inflight.has(index)
  }

  #pick (): { index: number, peer: string, reason: FetchReason } | undefined {
    const now = Date.now()
    const settings = this.swarm.settings
    const graceOver = now - this.#started >= settings.startGraceMs
    // 1. What readers need next, closest first; the chunk a reader blocks on first of all.
    const urgent: number[] = []
    for (const index of this.#waiters.keys()) if (this.#wanted(index)) urgent.push(index)
    for (const cursor of this.#cursors) {
      const until = Math.min(cursor.last, cursor.position + settings.readAhead)
      for (let i = cursor.position; i <= until; i++) if (this.#wanted(i)) urgent.push(i)
    }
    for (const index of urgent) {
      let since = this.#urgentSince.get(index)
      if (since == null) this.#urgentSince.set(index, since = now)
      // From a seed: when it is ours to fetch, when its downloader went quiet, or when waited too long.
      const silence = this.#ownerSilence(index, now)
      const seeds = graceOver && (silence >= settings.urgentFallbackMs || now - since >= settings.backgroundFallbackMs)
      const peer = this.#choose(index, seeds)
      if (peer != null) return { index, peer, reason: silence === 0 ? 'urgent-mine' : silence >= settings.urgentFallbackMs ? 'urgent-owner-quiet' : seeds ? 'urgent-waited' : 'urgent' }
    }
    if (!settings.fetchWhole && this.#cursors.size === 0) return undefined
    // 2. Chunks other downloaders announced: rarest of a sample.
    let best: { index: number, peer: string, rarity: number, tie: number, reason: FetchReason } | undefined
    let sampled = 0
    for (const index of this.#available) {
      if (!this.#wanted(index)) {
        if (getBit(this.#local, index)) this.#available.delete(index)
        continue
      }
      const peer = this.#choose(index, false)
      if (peer == null) continue
      const rarity = this.#holders(index)
      const tie = Math.random()
      if (best == null || rarity < best.rarity || (rarity === best.rarity && tie < best.tie)) best = { index, peer, rarity, tie, reason: 'announced' }
      if (++sampled >= RARITY_SAMPLE) break
    }
    if (best != null) {
      this.#available.delete(best.index)
      return best
    }
    if (!graceOver) return undefined
    // 3. Chunks this agent is responsible for, in image order, from any holder.
    for (; this.#ownedScan < this.n; this.#ownedScan++) {
      const index = this.#ownedScan
      if (!this.#wanted(index) || !this.#isMine(index)) continue
      const peer = this.#choose(index, true)
      if (peer == null) {
        // Nobody holds it yet, or every holder is busy: try again next time from here.
        if (this.#holders(index) > 0) break
        continue
      }
      return { index, peer, reason: 'mine' }
    }
    // 4. Chunks whose downloader has gone quiet: from any holder.
    const quiet = new Set<string>()
    for (const owner of this.#downloaders) {
      if (owner === this.swarm.self) continue
      const peer = this.#peers.get(owner)
      if (peer == null || now - peer.lastHeard >= settings.backgroundFallbackMs) quiet.add(owner)
    }
    if (quiet.size > 0) {
      for (let scanned = 0; scanned < this.n; scanned++) {
        const index = this.#fallbackScan
        this.#fallbackScan = (this.#fallbackScan + 1) % this.n
        if (!this.#wanted(index) || !quiet.has(this.#ownerOf(index))) continue
        const peer = this.#choose(index, true)
        if (peer != null) return { index, peer, reason: 'owner-quiet' }
        if (this.#holders(index) > 0) break
      }
    }
    return undefined
  }

  /** How many usable peers hold the chunk (connected ones: see `#choose`). */
  #holders (index: number): number {
    let count = 0
    const failed = this.#failed.get(index)
    const now = Date.now()
    for (const [key, peer] of this.#peers) {
      if (!peer.connected || !getBit(peer.bits, index) || this.swarm.isBad(key)) continue
      const until = failed?.get(key)
      if (until != null && until > now) continue
      count++
    }
    return count
  }

  /**
   * The least busy usable holder of a chunk: a downloader if any has it (and room), else a seed
   * when `seedsAllowed`. Ties are broken at random. Peers that disconnected are skipped: a
   * failed dial excludes a peer for one chunk only, so a dead holder would otherwise be dialled
   * once per chunk. They count again once they reconnect (`peerConnected`) or speak (`#peer`).
   */
  #choose (index: number, seedsAllowed: boolean): string | undefined {
    const failed = this.#failed.get(index)
    const now = Date.now()
    const perPeer = this.swarm.settings.maxInFlightPerPeer
    let best: string | undefined
    let bestTier = 3
    let bestLoad = Infinity
    let bestTie = 0
    let busyDownloader = false
    for (const [key, peer] of this.#peers) {
      if (!peer.connected || !getBit(peer.bits, index) || this.swarm.isBad(key)) continue
      const until = failed?.get(key)
      if (until != null && until > now) continue
      // Downloaders, and agents that finished downloading it, before the seeds it came from.
      const tier = peer.downloader || peer.state === HAVE_COMPLETE ? 0 : 1
      const load = this.swarm.load(key)
      if (load >= perPeer) {
        if (tier === 0) busyDownloader = true
        continue
      }
      if (tier === 1 && !seedsAllowed) continue
      const tie = Math.random()
      if (tier < bestTier || (tier === bestTier && (load < bestLoad || (load === bestLoad && tie < bestTie)))) {
        best = key
        bestTier = tier
        bestLoad = load
        bestTie = tie
      }
    }
    // A downloader that holds it but is busy is worth the wait: a seed's upload is the scarce one.
    if (bestTier === 1 && busyDownloader) return undefined
    return best
  }

  #dispatch (index: number, peer: string, reason: FetchReason): void {
    const cid = this.manifest.cids[index]
    const { promise, shared } = this.swarm.fetch(cid, peer)
    const source = this.#peers.get(peer)
    if (!shared) this.swarm.counted(reason, source?.downloader === true || source?.state === HAVE_COMPLETE)
    if (!shared) this.swarm.addLoad(peer, 1)
    const fetch: Fetch = { promise, peer: shared ? undefined : peer }
    this.#inflight.set(index, fetch)
    this.#urgentSince.delete(index)
    promise.then(bytes => {
      if (!shared) this.swarm.addLoad(peer, -1)
      void this.#fetched(index, cid, bytes, fetch)
    }, err => {
      if (!shared) this.swarm.addLoad(peer, -1)
      this.#failedFetch(index, peer, err as Error, shared, fetch)
    })
  }

  async #fetched (index: number, cid: string, bytes: Uint8Array, fetch: Fetch): Promise<void> {
    // Readers get the verified bytes now.
    for (const waiter of this.#waiters.get(index)?.splice(0) ?? []) waiter.resolve(bytes)
    this.#waiters.delete(index)
    try {
      await this.swarm.components.blocks.putChunk(cid, bytes, { signal: this.swarm.signal, verified: true })
      // Every index with this CID is now local (images repeat chunks of zeros).
      this.#markLocal(index, true)
      for (let i = 0; i < this.n; i++) if (i !== index && this.manifest.cids[i] === cid && !getBit(this.#local, i)) this.#markLocal(i, true)
    } catch (err) {
      if (this.#closed == null) {
        this.#log.error('could not store fetched chunk %s - %e', cid, err)
        // Not from this peer again for a while, so a full disk does not loop on the network.
        if (fetch.peer != null) this.#excludeFor(index, fetch.peer)
      }
    } finally {
      if (this.#inflight.get(index) === fetch) this.#inflight.delete(index)
      this.pump()
    }
  }

  #failedFetch (index: number, peer: string, err: Error, shared: boolean, fetch: Fetch): void {
    if (this.#inflight.get(index) === fetch) this.#inflight.delete(index)
    if (this.#closed != null) return
    if (!shared) {
      const name = err.name
      if (name === 'ChunkIntegrityError') {
        this.#log.error('peer %s sent a chunk that does not match %s; not asking it again', peer, this.manifest.cids[index])
        this.swarm.markBad(peer)
      } else if (name === 'NotHeldError') {
        const state = this.#peers.get(peer)
        if (state != null) state.bits[index >> 3] &= ~(0x80 >> (index & 7))
      } else if (name !== 'AbortedError') {
        this.#log('fetch of chunk %d from %s failed - %e', index, peer, err)
        this.#excludeFor(index, peer)
        this.swarm.checkReachable(peer)
      }
    }
    if (index < this.#ownedScan) this.#ownedScan = index
    this.pump()
  }

  #excludeFor (index: number, peer: string): void {
    let failed = this.#failed.get(index)
    if (failed == null) this.#failed.set(index, failed = new Map())
    failed.set(peer, Date.now() + CHUNK_FAILURE_MS)
  }

  #markLocal (index: number, announce: boolean): void {
    if (getBit(this.#local, index)) return
    setBit(this.#local, index)
    this.localCount++
    this.#lastProgress = Date.now()
    this.#failed.delete(index)
    this.#available.delete(index)
    this.#urgentSince.delete(index)
    if (announce) {
      this.#announce.push(index)
      // The first chunk after a quiet spell goes out at once: another downloader may be waiting for it.
      if (Date.now() - this.#lastAnnounce >= this.swarm.settings.announceIntervalMs) this.#flushAnnounce()
    }
    if (this.localCount === this.n && this.scanned) this.#finish()
  }

  #unmarkLocal (index: number): void {
    if (!getBit(this.#local, index)) return
    this.#local[index >> 3] &= ~(0x80 >> (index & 7))
    this.localCount--
    if (this.complete) {
      this.complete = false
      this.#startNetwork()
    }
  }

  #finish (): void {
    if (this.complete) return
    this.complete = true
    clearInterval(this.#timer)
    this.#timer = undefined
    // The last indices go out with the complete state.
    if (this.#networkStarted) this.#announceTo(this.#announce.splice(0))
    this.#announce.length = 0
    this.#log('image %s complete (%d chunks)', this.imageId, this.n)
  }

  #flushAnnounce (): void {
    if (this.complete || this.#announce.length === 0) return
    const indices = this.#announce.splice(0)
    this.#lastAnnounce = Date.now()
    this.#announceTo(indices)
  }

  #tick (): void {
    if (this.#closed != null) return
    const now = Date.now()
    const settings = this.swarm.settings
    if (this.#announce.length > 0 && now - this.#lastAnnounce >= settings.announceIntervalMs) this.#flushAnnounce()
    // Readers waiting on chunks nobody usable holds: ask around again, and give up in time.
    let starving = false
    for (const [index, waiters] of this.#waiters) {
      const sourced = this.#inflight.has(index) || this.#holders(index) > 0
      for (const waiter of [...waiters]) {
        if (sourced) {
          waiter.noSourceSince = undefined
          continue
        }
        starving = true
        waiter.noSourceSince ??= now
        if (now - waiter.noSourceSince >= settings.unavailableTimeoutMs) {
          waiter.reject(new ChunkUnavailableError(`No peer holds chunk ${index} (${this.manifest.cids[index]}) of image ${this.imageId}.`))
        }
      }
    }
    if (starving && now - this.#lastQuery >= REQUERY_MS) this.#queryAll()
    if (this.readers === 0 && this.#inflight.size === 0 && now - this.#lastProgress >= IDLE_SESSION_MS) {
      this.#log('giving up on image %s: no reader and no progress', this.imageId)
      this.swarm.dropSession(this)
      void this.close(new ChunkUnavailableError(`Image ${this.imageId} stalled.`))
      return
    }
    this.pump()
  }
}

/** Waits for a promise, or rejects with AbortedError when the signal fires first. */
async function abortable<T> (promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal == null) return await promise
  if (signal.aborted) throw new AbortedError('The download was aborted.', { cause: signal.reason })
  let onAbort = noop
  const aborted = new Promise<never>((resolve, reject) => {
    onAbort = () => { reject(new AbortedError('The download was aborted.', { cause: signal.reason })) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

function popcount (b: number): number {
  let n = 0
  for (; b !== 0; b &= b - 1) n++
  return n
}

function fnv1a (text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** murmur3's finalizer: spreads the bits of a 32-bit value. */
function mix (x: number): number {
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b)
  x ^= x >>> 13
  x = Math.imul(x, 0xc2b2ae35)
  x ^= x >>> 16
  return x >>> 0
}
