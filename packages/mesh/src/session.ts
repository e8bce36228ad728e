/**
 * A download session: one image, any number of readers, one set of fetches. It keeps what it
 * knows of peers' holdings (HAVE answers and requests, ANNOUNCEs), asks the scheduling policy
 * (scheduling.ts) what to fetch next, and reaches everything else through a narrow host
 * (`SessionHost`, the Swarm).
 */
import { AbortedError, ChunkUnavailableError } from '@peerglance/interface'
import type { ChunkBlocks, Manifest } from '@peerglance/interface'
import type { Logger, PeerId } from '@libp2p/interface'
import type { HaveAnswer, HaveNote } from './chunk-exchange.ts'
import { leaseRef, plainRef } from './chunk-ref.ts'
import type { ChunkRef } from './chunk-ref.ts'
import { clearBit, getBit, HAVE_COMPLETE, HAVE_DOWNLOADING, HAVE_NONE, setBit, stateByte } from './framing.ts'
import type { HaveSelf, HaveState } from './framing.ts'
import type { MeshMetrics } from './metrics.ts'
import { anyHolder, downloadersOf, isSeed, pickNext, reachesSeed, rendezvousHash } from './scheduling.ts'
import type { FetchReason, Holdings, PeerHolding, PolicySettings, Wants } from './scheduling.ts'

/**
 * Time, as a session sees it: the swarm passes the real one; the simulator
 * (scripts/bench/simulate.ts) a virtual one, so the same code runs over a modelled network.
 */
export interface Clock {
  now: () => number
  /** Calls `fn` every `ms` until the returned function is called; never keeps the process alive. */
  every: (ms: number, fn: () => void) => () => void
}

/** The wall clock and Node's timers. */
export const realClock: Clock = {
  now: Date.now,
  every (ms, fn) {
    const timer = setInterval(fn, ms)
    timer.unref()
    return () => { clearInterval(timer) }
  }
}

export interface SessionSettings extends PolicySettings {
  maxInFlight: number
  unavailableTimeoutMs: number
  announceIntervalMs: number
}

/** What a session needs of the swarm around it. */
export interface SessionHost {
  readonly self: string
  readonly settings: SessionSettings
  readonly clock: Clock
  /** Aborted when the swarm stops. */
  readonly signal: AbortSignal
  readonly log: Logger
  readonly blocks: ChunkBlocks
  readonly metrics: Pick<MeshMetrics, 'hit' | 'miss' | 'imageReceived'>
  connectedPeers: () => PeerId[]
  /**
   * The chunk from the peer, verified: one fetch per CID over all sessions (`shared` when this
   * joined one already running); counts it against the peer's load while it runs. The session
   * releases the reference it gets.
   */
  fetch: (cid: string, peer: string, reason: FetchReason, fromDownloader: boolean) => { promise: Promise<ChunkRef>, shared: boolean }
  /** A HAVE request to the peer (which also tells it `mine`). */
  have: (peer: PeerId, key: string, cids: readonly string[], mine: HaveSelf & { bits: Uint8Array }) => Promise<HaveAnswer>
  /** An ANNOUNCE to the peer, fire and forget. */
  announce: (peer: PeerId, key: string, note: HaveSelf & { total: number, indices: readonly number[] }) => void
  isBad: (peer: string) => boolean
  /** The peer sent bytes that do not match their CID. */
  markBad: (peer: string) => void
  load: (peer: string) => number
  /** After a failed fetch: treats the peer as disconnected everywhere if it is. */
  checkReachable: (peer: string) => void
  /** The session gave up (idle); the swarm forgets it. */
  dropSession: (session: Session) => void
}

/**
 * How long a peer that failed a chunk (timeout, error), or refused it as a seed's first fetch, is
 * not asked for it again. It still counts as a holder, so a reader waiting for the chunk waits
 * this out rather than failing with "no peer holds it" (30 s, with readers giving up after 10,
 * made a slow seed's single timeout a failed read under load: seeding.spec).
 */
const CHUNK_FAILURE_MS = 5_000
/**
 * Failed tries of one chunk (timeouts, errors, "not held") after which a reader waiting for it
 * gets ChunkUnavailableError once no fetch of it is in flight. Holders that failed a chunk still
 * count as holders, so that a slow seed's one timeout does not fail a read; this bounds the wait
 * when the only peers that claim a chunk never send it (a stalling or lying member).
 */
const MAX_TRIES_WHILE_WAITING = 3
/** Session timer: fallbacks, waits for sources, batched announcements. */
const TICK_MS = 50
/** HAVE queries a session repeats while readers wait for chunks nobody is known to hold. */
const REQUERY_MS = 1_000
/** A background download with no reader that got nothing for this long gives up (a new read restarts it). */
const IDLE_SESSION_MS = 60_000
/**
 * A downloader that holds every chunk of a batch is not sent it, but still hears from us this
 * often: it takes a share of our silence (`backgroundFallbackMs`, 15 s; urgent chunks 5 s) to
 * mean we hang.
 */
const ANNOUNCE_KEEPALIVE_MS = 1_000

/** What this agent knows of one peer's holdings of one image. */
interface PeerState extends PeerHolding {
  id: PeerId
}

interface Waiter {
  /** Hands the waiter its own reference to the chunk. */
  resolve: (chunk: ChunkRef) => void
  reject: (err: Error) => void
  since: number
  /** The chunk's failed tries when this waiter came (`#tries`). */
  triesBefore: number
  /** Since when no usable peer holds the chunk (for ChunkUnavailableError). */
  noSourceSince?: number
}

interface Fetch {
  promise: Promise<ChunkRef>
  peer?: string
  /** The fetched chunk while it is being written to the store: readers that come meanwhile take it. */
  chunk?: ChunkRef
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
export class Session {
  readonly host: SessionHost
  readonly imageId: string
  readonly key: string
  readonly manifest: Manifest
  readonly n: number
  readonly #local: Uint8Array
  /**
   * Chunks fetched ahead of any reader: each was counted as a cache miss when it arrived, so the
   * first read of it counts nothing more; later reads are hits.
   */
  readonly #fetchedHere: Uint8Array
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
  /** Chunk index → fetches of it that failed, until it is held here. */
  readonly #tries = new Map<number, number>()
  /** Peers a HAVE request is out to. */
  readonly #querying = new Set<string>()
  readonly #announce: number[] = []
  #lastAnnounce = 0
  /** Per peer: when it was last sent an ANNOUNCE, and the state that one said. */
  readonly #told = new Map<string, { at: number, state: number }>()
  #lastQuery = 0
  #lastProgress = 0
  /** Cancels the session's timer. */
  #timer: (() => void) | undefined
  #closed: Error | undefined
  #pumping = false
  #networkStarted = false
  #pumpAgain = false
  #pumpQueued = false
  #downloaders: string[] = []
  readonly #owners: Array<string | undefined> = []
  readonly #runnersUp: Array<string | undefined> = []
  /** A seed of the image is connected: this session takes a share of the first fetches from seeds. */
  #nearSeed = false
  readonly #peerHash = new Map<string, number>()
  /** Indices of the CIDs that occur more than once in the image (chunks of zeros), by CID. */
  readonly #repeats = new Map<string, number[]>()
  /** The scheduling policy's view of who holds what (scheduling.ts). */
  readonly #holdings: Holdings
  /** The scheduling policy's view of what we want, and its scan positions. */
  readonly #wants: Wants

  constructor (host: SessionHost, imageId: string, key: string, manifest: Manifest) {
    this.host = host
    this.imageId = imageId
    this.key = key
    this.manifest = manifest
    this.n = manifest.cids.length
    this.#local = new Uint8Array(Math.ceil(this.n / 8))
    this.#fetchedHere = new Uint8Array(this.#local.byteLength)
    const seen = new Map<string, number[]>()
    manifest.cids.forEach((cid, i) => {
      const at = seen.get(cid)
      if (at == null) seen.set(cid, [i])
      else at.push(i)
    })
    for (const [cid, at] of seen) if (at.length > 1) this.#repeats.set(cid, at)
    const session = this
    this.#holdings = {
      self: host.self,
      n: this.n,
      peers: this.#peers,
      failed: this.#failed,
      get downloaders () { return session.#downloaders },
      hashOf: peer => this.#hashOf(peer),
      owners: this.#owners,
      runnersUp: this.#runnersUp,
      isBad: peer => host.isBad(peer),
      load: peer => host.load(peer)
    }
    const waiters = this.#waiters
    const cursors = this.#cursors
    this.#wants = {
      started: 0,
      wanted: index => this.#wanted(index),
      isLocal: index => getBit(this.#local, index),
      get waiting () { return waiters.keys() },
      cursors,
      get hasReaders () { return cursors.size > 0 },
      urgentSince: new Map(),
      available: new Set(),
      ownedScan: 0,
      fallbackScan: 0,
      stealScan: 0,
      stealAnyScan: 0
    }
  }

  get #log (): Logger { return this.host.log }

  #now (): number { return this.host.clock.now() }

  /** The bitfield of chunks held here (read only; for HAVE answers). */
  get localBits (): Uint8Array { return this.#local }

  #state (): HaveState {
    return this.complete ? HAVE_COMPLETE : HAVE_DOWNLOADING
  }

  /** What this session says of itself with every HAVE and ANNOUNCE. */
  get self (): HaveSelf {
    return { state: this.#state(), nearSeed: this.#nearSeed && !this.complete }
  }

  /** Tells the connected peers downloading this image what we stored (`indices`) and our state. */
  #announceTo (indices: readonly number[]): void {
    const note = { ...this.self, total: this.n, indices }
    const state = stateByte(note)
    const now = this.#now()
    for (const [key, peer] of this.#peers) {
      if (!peer.connected || peer.state !== HAVE_DOWNLOADING || this.host.isBad(key)) continue
      // Nothing new for a peer that holds the whole batch (the source of a chunk always does, and
      // later fetchers more and more): about half of the messages, each a TLS record written and
      // one read, decoded and scheduled on at the other end (docs/benchmarks.md, chatter).
      const told = this.#told.get(key)
      if (told != null && told.state === state && now - told.at < ANNOUNCE_KEEPALIVE_MS && indices.every(i => getBit(peer.bits, i))) continue
      this.#told.set(key, { at: now, state })
      this.host.announce(peer.id, this.key, note)
    }
  }

  /** Scans the local store, then (if anything is missing) announces itself and asks peers. */
  begin (): void {
    this.#wants.started = this.#now()
    this.scanning = this.#scan().catch(err => {
      this.#log.error('scan of local chunks failed - %e', err)
    })
  }

  async #scan (): Promise<void> {
    const { blocks } = this.host
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
    this.#lastProgress = this.#now()
    this.#wants.started = this.#now()
    this.#recomputeOwners()
    this.#timer = this.host.clock.every(TICK_MS, () => { this.#tick() })
    this.#queryAll()
    this.pump()
  }

  /** Stops fetching; readers waiting get `err`. */
  async close (err: Error): Promise<void> {
    this.#closed ??= err
    this.#timer?.()
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
      peers: [...this.#peers.entries()].map(([k, p]) => ({ peer: k.slice(-6), state: p.state, downloader: p.downloader, connected: p.connected, held: p.bits.reduce((n, b) => n + popcount(b), 0), load: this.host.load(k), bad: this.host.isBad(k) })),
      failed: [...this.#failed.entries()].map(([i, m]) => `${i}:${[...m.keys()].map(k => k.slice(-6)).join(',')}`),
      downloaders: this.#downloaders.map(d => d.slice(-6)),
      ownedScan: this.#wants.ownedScan
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

  /**
   * The verified bytes of chunk `index`: local, or from a fetch (in flight, or to come). The
   * caller releases the reference once done with the bytes: a fetched chunk's buffer is then
   * reused for another chunk (chunk-ref.ts).
   */
  async chunk (index: number, signal?: AbortSignal): Promise<ChunkRef> {
    const { metrics } = this.host
    const cid = this.manifest.cids[index]
    if (!this.#inflight.has(index) && (getBit(this.#local, index) || !this.scanned)) {
      try {
        const chunk = await this.#readLocal(cid, signal)
        if (!getBit(this.#local, index)) this.#markLocal(index, false)
        if (getBit(this.#fetchedHere, index)) clearBit(this.#fetchedHere, index)
        else metrics.hit()
        return chunk
      } catch (err) {
        if ((err as Error).name !== 'ChunkUnavailableError') throw err
        // Gone since the scan (collected): fetch it again.
        this.#unmarkLocal(index)
      }
    }
    if (this.#closed != null) throw this.#closed
    const writing = this.#inflight.get(index)?.chunk
    if (writing != null) {
      // Fetched and being written: this read is its first (the fetch counted the miss).
      clearBit(this.#fetchedHere, index)
      return writing.hold()
    }
    // The fetch in flight, or the next one, hands each waiter a reference (#fetched).
    const { promise, resolve, reject } = Promise.withResolvers<ChunkRef>()
    const waiter: Waiter = { resolve, reject, since: this.#now(), triesBefore: this.#tries.get(index) ?? 0 }
    let list = this.#waiters.get(index)
    if (list == null) this.#waiters.set(index, list = [])
    list.push(waiter)
    this.#log('reader waits for %d', index)
    if (this.scanned) this.#startNetwork()
    this.pump()
    try {
      return await abortable(promise, signal)
    } catch (err) {
      // Handed a reference just as the wait ended: nobody else will release it.
      promise.then(chunk => { chunk.release() }, noop)
      throw err
    } finally {
      const waiting = this.#waiters.get(index)
      if (waiting != null) {
        const at = waiting.indexOf(waiter)
        if (at >= 0) waiting.splice(at, 1)
        if (waiting.length === 0) this.#waiters.delete(index)
      }
    }
  }

  /** A local chunk, in a buffer the store reuses once released when it can lend one. */
  async #readLocal (cid: string, signal: AbortSignal | undefined): Promise<ChunkRef> {
    const { blocks } = this.host
    if (blocks.readChunkLease == null) return plainRef(await blocks.readChunk(cid, { signal }))
    if (signal?.aborted === true) throw new AbortedError('The download was aborted.', { cause: signal.reason })
    return leaseRef(await blocks.readChunkLease(cid))
  }

  // --- what peers hold --------------------------------------------------------------------------

  /** What a peer told us of its holdings: in a HAVE request it sent, or in an ANNOUNCE. */
  heard (from: PeerId, note: HaveNote): void {
    if (note.total !== this.n || this.#closed != null) return
    const peer = this.#peer(from)
    peer.lastHeard = this.#now()
    const wasDownloader = peer.state === HAVE_DOWNLOADING
    if (note.state === HAVE_COMPLETE) {
      peer.bits.fill(0xff)
      peer.state = HAVE_COMPLETE
    } else {
      peer.state = note.state === HAVE_DOWNLOADING ? HAVE_DOWNLOADING : HAVE_NONE
    }
    if (peer.state === HAVE_DOWNLOADING) peer.downloader = true
    const wasNear = peer.nearSeed
    peer.nearSeed = note.nearSeed === true
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
    this.#rescan()
    if (wasDownloader !== (peer.state === HAVE_DOWNLOADING) || wasNear !== peer.nearSeed || isSeed(peer)) this.#recomputeOwners()
    this.#pumpSoon()
  }

  /**
   * One pump for all the announcements that arrive together (one per peer per batch): a pump that
   * finds nothing to start scans the wanted chunks, and with a dozen peers announcing every
   * 150 ms those scans were the largest cost of a session (simulate.ts profile).
   */
  #pumpSoon (): void {
    if (this.#pumpQueued) return
    this.#pumpQueued = true
    queueMicrotask(() => {
      this.#pumpQueued = false
      this.pump()
    })
  }

  peerConnected (id: PeerId): void {
    // What it held before still counts; the HAVE query below brings it up to date.
    const known = this.#peers.get(id.toString())
    if (known != null && !known.connected) {
      known.connected = true
      this.#recomputeOwners()
    }
    if (this.#timer == null || this.complete) return
    void this.#query(id)
  }

  peerDisconnected (peer: string): void {
    const state = this.#peers.get(peer)
    if (state == null || !state.connected) return
    state.connected = false
    this.#recomputeOwners()
  }

  dropPeer (peer: string): void {
    this.#peers.delete(peer)
    this.#told.delete(peer)
    this.#recomputeOwners()
  }

  #peer (id: PeerId): PeerState {
    const key = id.toString()
    let peer = this.#peers.get(key)
    if (peer == null) {
      peer = { id, bits: new Uint8Array(this.#local.byteLength), state: HAVE_NONE, downloader: false, nearSeed: false, connected: true, lastHeard: this.#now() }
      this.#peers.set(key, peer)
    }
    peer.connected = true
    return peer
  }

  #queryAll (): void {
    this.#lastQuery = this.#now()
    for (const id of this.host.connectedPeers()) void this.#query(id)
  }

  async #query (id: PeerId): Promise<void> {
    const key = id.toString()
    // One HAVE at a time per peer: under load, answers slower than REQUERY_MS piled up on a
    // seed (each answer checks every chunk file) until none came back in time.
    if (this.host.isBad(key) || this.#querying.has(key)) return
    this.#querying.add(key)
    try {
      const mine = { ...this.self, bits: this.#local }
      const answer = await this.host.have(id, this.key, this.manifest.cids, mine)
      if (this.#closed != null || this.host.isBad(key)) return
      const peer = this.#peer(id)
      peer.lastHeard = this.#now()
      for (let b = 0; b < answer.bits.byteLength; b++) peer.bits[b] |= answer.bits[b]
      peer.state = answer.state
      if (answer.state === HAVE_DOWNLOADING) peer.downloader = true
      peer.nearSeed = answer.nearSeed === true
      this.#noteAvailable(peer)
      this.#rescan()
      this.#recomputeOwners()
      this.pump()
    } catch (err) {
      this.#log('HAVE query to %s failed - %e', key, err)
    } finally {
      this.#querying.delete(key)
    }
  }

  /** Chunks a downloader holds and we lack go to the "available" set (scheduling step 2). */
  #noteAvailable (peer: PeerState, indices?: number[]): void {
    if (!peer.downloader) return
    if (indices != null) {
      for (const i of indices) if (i >= 0 && i < this.n && !getBit(this.#local, i)) this.#wants.available.add(i)
      return
    }
    for (let i = 0; i < this.n; i++) {
      if (getBit(peer.bits, i) && !getBit(this.#local, i)) this.#wants.available.add(i)
    }
  }

  // --- ownership (seeding) -------------------------------------------------------------------

  /** Who shares out the first fetches from seeds, after anything that may change it. */
  #recomputeOwners (): void {
    const isBad = (peer: string): boolean => this.host.isBad(peer)
    const near = reachesSeed(this.#peers, isBad)
    const list = downloadersOf(this.host.self, near, this.#peers, isBad)
    const changed = list.length !== this.#downloaders.length || list.some((p, i) => p !== this.#downloaders[i])
    this.#downloaders = list
    if (changed) {
      this.#rescan()
      this.#owners.length = 0
      this.#runnersUp.length = 0
    }
    if (near !== this.#nearSeed) {
      this.#nearSeed = near
      // The downloaders around us share out the seed's chunks by it: tell them now, not with the next chunk.
      if (this.#networkStarted && !this.complete) this.#announceTo([])
    }
  }

  /** The scans of our share and of unclaimed chunks start over (holders or owners changed). */
  #rescan (): void {
    this.#wants.ownedScan = 0
    this.#wants.stealScan = 0
    this.#wants.stealAnyScan = 0
  }

  #hashOf (peer: string): number {
    let h = this.#peerHash.get(peer)
    if (h == null) {
      h = rendezvousHash(this.key, peer)
      this.#peerHash.set(peer, h)
    }
    return h
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
        while (this.#inflight.size < this.host.settings.maxInFlight) {
          const pick = pickNext(this.#holdings, this.#wants, this.host.settings, this.#now())
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

  #dispatch (index: number, peer: string, reason: FetchReason): void {
    const cid = this.manifest.cids[index]
    const source = this.#peers.get(peer)
    const { promise, shared } = this.host.fetch(cid, peer, reason, source?.downloader === true || source?.state === HAVE_COMPLETE)
    const fetch: Fetch = { promise, peer: shared ? undefined : peer }
    this.#log('fetch %d from %s (%s)', index, peer, reason)
    this.#inflight.set(index, fetch)
    this.#wants.urgentSince.delete(index)
    promise.then(chunk => {
      void this.#fetched(index, cid, chunk, fetch)
    }, err => {
      this.#failedFetch(index, peer, err as Error, shared, fetch)
    })
  }

  async #fetched (index: number, cid: string, chunk: ChunkRef, fetch: Fetch): Promise<void> {
    this.#log('fetched %d', index)
    this.host.metrics.miss()
    this.host.metrics.imageReceived(this.imageId, chunk.bytes.byteLength)
    // Readers get the verified bytes now; with none yet, the first to come counts no hit.
    const waiters = this.#waiters.get(index)?.splice(0) ?? []
    if (waiters.length === 0) setBit(this.#fetchedHere, index)
    for (const waiter of waiters) waiter.resolve(chunk.hold())
    this.#waiters.delete(index)
    fetch.chunk = chunk
    try {
      await this.host.blocks.putChunk(cid, chunk.bytes, { signal: this.host.signal, verified: true })
      // Every index with this CID is now local (images repeat chunks of zeros).
      this.#markLocal(index, true)
      for (const i of this.#repeats.get(cid) ?? []) this.#markLocal(i, true)
    } catch (err) {
      if (this.#closed == null) {
        this.#log.error('could not store fetched chunk %s - %e', cid, err)
        // Not from this peer again for a while, so a full disk does not loop on the network.
        if (fetch.peer != null) this.#excludeFor(index, fetch.peer)
      }
    } finally {
      fetch.chunk = undefined
      chunk.release()
      if (this.#inflight.get(index) === fetch) this.#inflight.delete(index)
      this.pump()
    }
  }

  #failedFetch (index: number, peer: string, err: Error, shared: boolean, fetch: Fetch): void {
    if (this.#inflight.get(index) === fetch) this.#inflight.delete(index)
    if (this.#closed != null) return
    if (!shared) {
      const name = err.name
      if (name !== 'AbortedError' && name !== 'SentElsewhereError') this.#tries.set(index, (this.#tries.get(index) ?? 0) + 1)
      if (name === 'ChunkIntegrityError') {
        this.#log.error('peer %s sent a chunk that does not match %s; not asking it again', peer, this.manifest.cids[index])
        this.host.markBad(peer)
      } else if (name === 'NotHeldError') {
        const state = this.#peers.get(peer)
        if (state != null) clearBit(state.bits, index)
      } else if (name === 'SentElsewhereError') {
        // The seed holds it and gave it to another downloader, whose ANNOUNCE brings it here.
        this.#excludeFor(index, peer)
      } else if (name !== 'AbortedError') {
        this.#log('fetch of chunk %d from %s failed - %e', index, peer, err)
        this.#excludeFor(index, peer)
        this.host.checkReachable(peer)
      }
    }
    if (index < this.#wants.ownedScan) this.#wants.ownedScan = index
    if (index < this.#wants.stealScan) this.#wants.stealScan = index
    if (index < this.#wants.stealAnyScan) this.#wants.stealAnyScan = index
    this.pump()
  }

  #excludeFor (index: number, peer: string): void {
    let failed = this.#failed.get(index)
    if (failed == null) this.#failed.set(index, failed = new Map())
    failed.set(peer, this.#now() + CHUNK_FAILURE_MS)
  }

  #markLocal (index: number, announce: boolean): void {
    if (getBit(this.#local, index)) return
    setBit(this.#local, index)
    this.localCount++
    this.#lastProgress = this.#now()
    this.#failed.delete(index)
    this.#tries.delete(index)
    this.#wants.available.delete(index)
    this.#wants.urgentSince.delete(index)
    if (announce) {
      this.#announce.push(index)
      // The first chunk after a quiet spell goes out at once: another downloader may be waiting for it.
      if (this.#now() - this.#lastAnnounce >= this.host.settings.announceIntervalMs) this.#flushAnnounce()
    }
    if (this.localCount === this.n && this.scanned) this.#finish()
  }

  #unmarkLocal (index: number): void {
    if (!getBit(this.#local, index)) return
    clearBit(this.#local, index)
    this.localCount--
    if (this.complete) {
      this.complete = false
      this.#startNetwork()
    }
  }

  #finish (): void {
    if (this.complete) return
    this.complete = true
    this.#timer?.()
    this.#timer = undefined
    // The last indices go out with the complete state.
    if (this.#networkStarted) this.#announceTo(this.#announce.splice(0))
    this.#announce.length = 0
    this.#log('image %s complete (%d chunks)', this.imageId, this.n)
  }

  #flushAnnounce (): void {
    if (this.complete || this.#announce.length === 0) return
    const indices = this.#announce.splice(0)
    this.#lastAnnounce = this.#now()
    this.#announceTo(indices)
  }

  #tick (): void {
    if (this.#closed != null) return
    const now = this.#now()
    const settings = this.host.settings
    if (this.#announce.length > 0 && now - this.#lastAnnounce >= settings.announceIntervalMs) this.#flushAnnounce()
    // Readers waiting on chunks nobody usable holds: ask around again, and give up in time.
    let starving = false
    for (const [index, waiters] of this.#waiters) {
      // A HAVE still out may name a holder: the wait for one starts when none is left to answer
      // (each is bounded by its own timeout). A holder not asked for a while (it failed or
      // refused the chunk) is still one.
      const sourced = this.#inflight.has(index) || this.#querying.size > 0 || anyHolder(this.#holdings, index)
      const tries = this.#tries.get(index) ?? 0
      for (const waiter of [...waiters]) {
        if (tries - waiter.triesBefore >= MAX_TRIES_WHILE_WAITING && !this.#inflight.has(index)) {
          waiter.reject(new ChunkUnavailableError(`No peer sent chunk ${index} (${this.manifest.cids[index]}) of image ${this.imageId} in ${tries - waiter.triesBefore} tries.`))
          continue
        }
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
      this.host.dropSession(this)
      void this.close(new ChunkUnavailableError(`Image ${this.imageId} stalled.`))
      return
    }
    this.pump()
  }
}

function noop (): void {}

function popcount (b: number): number {
  let n = 0
  for (; b !== 0; b &= b - 1) n++
  return n
}

/** Waits for a promise, or rejects with AbortedError when the signal fires first. */
export async function abortable<T> (promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal == null) return await promise
  if (signal.aborted) throw new AbortedError('The download was aborted.', { cause: signal.reason })
  let onAbort = (): void => {}
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
