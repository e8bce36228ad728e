// The swarm simulator's agents: the mesh's own download sessions (packages/mesh/src/session.ts,
// which asks scheduling.ts what to fetch from whom) on a virtual clock, over the modelled network
// of simulate-network.ts. What the real Swarm and chunk exchange do around a session is played
// here in a few lines: one fetch per chunk at a time, the load per peer, HAVE and ANNOUNCE
// delivered after the network's latency, GETs answered in order on one TCP connection per pair of
// agents, a request that takes longer than its timeout failed.
//
// Each downloader reads the whole image in order, as Nova or `curl` would, from t = 0; the seed
// holds every chunk and has no session (it answers HAVE from its store, as an agent that
// uploaded the image does). Agents connect as the peer set does (peer-exchange.ts): each dials
// random others until it holds `peerTarget` connections, and nobody takes more than `maxPeers`.
import type { Logger, PeerId } from '@libp2p/interface'
import type { ChunkBlocks, Manifest } from '@peerglance/interface'
import { HAVE_NONE, NotHeldError, plainRef, RequestTimeoutError, SeedLedger, SentElsewhereError, Session } from '@peerglance/mesh'
import type { ChunkRef, FetchReason, HaveAnswer, HaveSelf, SessionHost, SessionSettings } from '@peerglance/mesh'
import {
  DEFAULT_ANNOUNCE_INTERVAL_MS, DEFAULT_BACKGROUND_FALLBACK_MS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_PER_PEER, DEFAULT_MAX_PEERS,
  DEFAULT_PEER_TARGET, DEFAULT_READ_AHEAD, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_START_GRACE_MS, DEFAULT_UNAVAILABLE_TIMEOUT_MS,
  DEFAULT_URGENT_FALLBACK_MS
} from '@peerglance/mesh'
import { FlowNetwork, Simulation } from './simulate-network.ts'
import type { Flow, TopologyInit } from './simulate-network.ts'

export interface SwarmModelInit extends Omit<TopologyInit, 'hosts'> {
  /** Downloaders; one seed comes on top (host 0). */
  downloaders: number
  imageBytes: number
  chunkBytes: number
  peerTarget?: number
  maxPeers?: number
  /**
   * An experiment the agent does not do yet: each host first connects to this many random hosts
   * of its own rack (default 0: peer sets are rack-blind, as peer-exchange.ts builds them).
   */
  rackPeers?: number
  /** Session settings over the agent's defaults. */
  settings?: Partial<SessionSettings>
  requestTimeoutMs?: number
  /** Seed of the random peer graph. */
  seed?: number
  /** Stop here (virtual ms) whatever is left. */
  limitMs?: number
  /**
   * How fast a reader passes on chunks it has, bytes per ms (default: at once). In the shaped
   * swarm a reader that waited for one chunk reads the ones after it back from the store and
   * sends them over HTTP, all eight at once at the end: ~250 MB/s each on two cores.
   */
  readRate?: number
}

export interface SwarmResult {
  /** Virtual ms at which each downloader held the whole image and its reader was done; NaN if never. */
  finished: number[]
  /** Virtual ms at which each downloader's reader got its first chunk (its first byte); NaN if never. */
  firstChunk: number[]
  /** The Kumar–Ross bound, ms: max(S/u_seed, S/d_min, N·S/(u_seed + Σu_i)). */
  boundMs: number
  imageBytes: number
  /** Bytes that left the seed's NIC. */
  seedSent: number
  /** Bytes received by all downloaders' NICs, and their sum over flows started (conservation). */
  received: number
  sent: number
  peakUtilisation: number
  /** Fetches by scheduling step and kind of source. */
  reasons: Record<string, number>
  timeouts: number
  /** Reads that failed (no holder within unavailableTimeoutMs) and were retried. */
  readFailures: number
  events: number
  peers: { min: number, max: number, mean: number }
}

const EMPTY = new Uint8Array(0)

const SILENT: Logger = Object.assign(() => {}, {
  enabled: false,
  error: () => {},
  trace: () => {},
  newScope: () => SILENT
}) as unknown as Logger

/** A PeerId as far as sessions use one: a name. */
function peerIdOf (name: string): PeerId {
  return { toString: () => name } as unknown as PeerId
}

/** mulberry32: a small seeded generator, so a peer graph can be made again. */
function seeded (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One GET in a connection's queue. */
interface Transfer {
  index: number
  resolve: (bytes: Uint8Array) => void
  reject: (err: Error) => void
  flow?: Flow
  settled: boolean
}

/** What a server sends to one client, one response after another (one TCP connection). */
class Connection {
  readonly queue: Transfer[] = []
  active: Transfer | undefined
}

class SimAgent implements SessionHost {
  readonly index: number
  readonly self: string
  readonly id: PeerId
  readonly model: SwarmModel
  readonly held: Uint8Array
  heldCount = 0
  neighbours: SimAgent[] = []
  session: Session | undefined
  finishedAt = NaN
  firstChunkAt = NaN
  /** Virtual ms at which the reader had read half and 90 % of the image, and the store held them. */
  readAt: { half: number, most: number } = { half: NaN, most: NaN }
  heldAt: { half: number, most: number } = { half: NaN, most: NaN }
  readDone = false
  readonly #load = new Map<string, number>()
  readonly #fetching = new Map<string, Promise<ChunkRef>>()
  /** Outgoing connections' send queues, by client. */
  readonly connections = new Map<number, Connection>()
  /** First fetches from this agent as a seed (the exchange server's, packages/mesh/src/seed-ledger.ts). */
  readonly ledger = new SeedLedger()
  refusedOnce = 0
  readonly blocks: ChunkBlocks
  readonly metrics = { hit () {}, miss () {}, imageReceived () {} }
  readonly signal = new AbortController().signal
  readonly log = SILENT

  constructor (model: SwarmModel, index: number, n: number) {
    this.model = model
    this.index = index
    this.self = `h${String(index).padStart(5, '0')}`
    this.id = peerIdOf(this.self)
    this.held = new Uint8Array(n)
    const agent = this
    this.blocks = {
      has: async cid => agent.held[model.indexOf(cid)] === 1,
      readChunk: async cid => {
        if (agent.held[model.indexOf(cid)] !== 1) throw Object.assign(new Error('not here'), { name: 'ChunkUnavailableError' })
        return EMPTY
      },
      putChunk: async cid => { agent.store(model.indexOf(cid)) }
    }
  }

  get settings (): SessionSettings { return this.model.settings }
  get clock (): SessionHost['clock'] { return this.model.clock }

  store (index: number): void {
    if (this.held[index] === 1) return
    this.held[index] = 1
    this.heldCount++
    if (this.heldCount === Math.ceil(this.held.length / 2)) this.heldAt.half = this.model.sim.now
    if (this.heldCount === Math.ceil(this.held.length * 0.9)) this.heldAt.most = this.model.sim.now
    this.model.noteProgress(this)
  }

  connectedPeers (): PeerId[] { return this.neighbours.map(a => a.id) }
  isBad (): boolean { return false }
  markBad (): void {}
  checkReachable (): void {}
  dropSession (): void {}
  load (peer: string): number { return this.#load.get(peer) ?? 0 }

  fetch (cid: string, peer: string, reason: FetchReason, fromDownloader: boolean): { promise: Promise<ChunkRef>, shared: boolean } {
    const existing = this.#fetching.get(cid)
    if (existing != null) return { promise: existing, shared: true }
    const kind = `${reason}/${fromDownloader ? 'from-downloader' : 'from-seed'}`
    this.model.reasons[kind] = (this.model.reasons[kind] ?? 0) + 1
    this.#load.set(peer, this.load(peer) + 1)
    const promise = this.model.get(this.model.agent(peer), this, this.model.indexOf(cid), !fromDownloader).then(plainRef)
    this.#fetching.set(cid, promise)
    const done = (): void => {
      this.#load.set(peer, this.load(peer) - 1)
      if (this.#fetching.get(cid) === promise) this.#fetching.delete(cid)
    }
    promise.then(done, (err: Error) => {
      done()
      const failure = `${kind}/${err.name}`
      this.model.reasons[failure] = (this.model.reasons[failure] ?? 0) + 1
    })
    return { promise, shared: false }
  }

  async have (peer: PeerId, key: string, cids: readonly string[], mine: HaveSelf & { bits: Uint8Array }): Promise<HaveAnswer> {
    const server = this.model.agent(peer.toString())
    const { sim } = this.model
    const latency = this.model.network.latency(this.index, server.index)
    const bits = mine.bits.slice()
    return await new Promise(resolve => {
      sim.after(latency, () => {
        const answer = server.asked(this.id, key, { ...mine, total: cids.length, from: 0, bits })
        const out = answer.bits != null ? answer.bits.slice() : server.bitfield()
        sim.after(latency, () => { resolve({ state: answer.state, nearSeed: answer.nearSeed, bits: out }) })
      })
    })
  }

  announce (peer: PeerId, key: string, note: HaveSelf & { total: number, indices: readonly number[] }): void {
    const to = this.model.agent(peer.toString())
    this.model.sim.after(this.model.network.latency(this.index, to.index), () => {
      to.session?.heard(this.id, { state: note.state, nearSeed: note.nearSeed, total: note.total, indices: note.indices as number[] })
    })
  }

  /** As the Swarm answers a HAVE: the session's state and bits, or none. */
  asked (from: PeerId, key: string, note: HaveSelf & { total: number, from: number, bits: Uint8Array }): HaveSelf & { bits?: Uint8Array } {
    const session = this.session
    if (session == null) return { state: HAVE_NONE }
    session.heard(from, note)
    return { ...session.self, bits: session.scanned ? session.localBits : undefined }
  }

  /** The store's answer to a HAVE (no session to ask). */
  bitfield (): Uint8Array {
    const bits = new Uint8Array(Math.ceil(this.held.length / 8))
    for (let i = 0; i < this.held.length; i++) if (this.held[i] === 1) bits[i >> 3] |= 0x80 >> (i & 7)
    return bits
  }
}

export class SwarmModel {
  readonly sim = new Simulation()
  readonly network: FlowNetwork
  readonly init: SwarmModelInit
  readonly settings: SessionSettings
  readonly clock: SessionHost['clock']
  readonly agents: SimAgent[]
  readonly manifest: Manifest
  readonly n: number
  readonly reasons: Record<string, number> = {}
  timeouts = 0
  readFailures = 0
  sent = 0
  #finished = 0
  #over = false
  readonly #cidIndex = new Map<string, number>()
  readonly #byName = new Map<string, SimAgent>()

  constructor (init: SwarmModelInit) {
    this.init = init
    const hosts = init.downloaders + 1
    this.network = new FlowNetwork(this.sim, { ...init, hosts })
    this.n = Math.ceil(init.imageBytes / init.chunkBytes)
    const cids = Array.from({ length: this.n }, (_, i) => `c${i}`)
    cids.forEach((cid, i) => this.#cidIndex.set(cid, i))
    this.manifest = { size: init.imageBytes, chunkSize: init.chunkBytes, cids } as unknown as Manifest
    this.settings = {
      readAhead: DEFAULT_READ_AHEAD,
      startGraceMs: DEFAULT_START_GRACE_MS,
      urgentFallbackMs: DEFAULT_URGENT_FALLBACK_MS,
      backgroundFallbackMs: DEFAULT_BACKGROUND_FALLBACK_MS,
      maxInFlightPerPeer: DEFAULT_MAX_IN_FLIGHT_PER_PEER,
      fetchWhole: true,
      maxInFlight: DEFAULT_MAX_IN_FLIGHT,
      unavailableTimeoutMs: DEFAULT_UNAVAILABLE_TIMEOUT_MS,
      announceIntervalMs: DEFAULT_ANNOUNCE_INTERVAL_MS,
      ...init.settings
    }
    const sim = this.sim
    this.clock = { now: () => sim.now, every: (ms, fn) => sim.every(ms, fn) }
    this.agents = Array.from({ length: hosts }, (_, i) => new SimAgent(this, i, this.n))
    for (const a of this.agents) this.#byName.set(a.self, a)
    this.agents[0].held.fill(1)
    this.agents[0].heldCount = this.n
    this.#connect(seeded(init.seed ?? 1))
  }

  indexOf (cid: string): number {
    const i = this.#cidIndex.get(cid)
    if (i == null) throw new Error(`no chunk ${cid}`)
    return i
  }

  agent (name: string): SimAgent {
    const a = this.#byName.get(name)
    if (a == null) throw new Error(`no agent ${name}`)
    return a
  }

  /** A random graph as the peer sets build it: dial until `peerTarget`, accept up to `maxPeers`. */
  #connect (random: () => number): void {
    const target = this.init.peerTarget ?? DEFAULT_PEER_TARGET
    const max = this.init.maxPeers ?? DEFAULT_MAX_PEERS
    const agents = this.agents
    const linked = new Set<string>()
    const link = (a: SimAgent, b: SimAgent): void => {
      const key = a.index < b.index ? `${a.index}/${b.index}` : `${b.index}/${a.index}`
      if (b === a || linked.has(key) || b.neighbours.length >= max) return
      linked.add(key)
      a.neighbours.push(b)
      b.neighbours.push(a)
    }
    const rackPeers = this.init.rackPeers ?? 0
    const rackSize = this.init.rackSize
    for (const a of agents) {
      const first = Math.floor(a.index / rackSize) * rackSize
      const size = Math.min(rackSize, agents.length - first)
      for (let tries = 0; a.neighbours.length < rackPeers && tries < 50 * rackPeers; tries++) link(a, agents[first + Math.floor(random() * size)])
    }
    for (const a of agents) {
      for (let tries = 0; a.neighbours.length < target && tries < 50 * target; tries++) {
        link(a, agents[Math.floor(random() * agents.length)])
      }
    }
  }

  /** A GET from `client` to `server`: the request's latency, then the chunk on their connection. */
  async get (server: SimAgent, client: SimAgent, index: number, once: boolean): Promise<Uint8Array> {
    const latency = this.network.latency(client.index, server.index)
    const timeoutMs = this.init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    return await new Promise((resolve, reject) => {
      const t: Transfer = { index, resolve, reject, settled: false }
      this.sim.after(latency, () => {
        if (t.settled) return
        const refused = once && !server.ledger.claim(this.manifest.cids[index], client.self, this.sim.now)
        if (refused) server.refusedOnce++
        if (server.held[index] !== 1 || refused) {
          const err = refused ? new SentElsewhereError(`${server.self} sent chunk ${index} to another downloader`) : new NotHeldError(`${server.self} does not hold chunk ${index}`)
          this.sim.after(latency, () => { this.#settle(t, err) })
          return
        }
        let conn = server.connections.get(client.index)
        if (conn == null) server.connections.set(client.index, conn = new Connection())
        conn.queue.push(t)
        this.#pull(server, client, conn)
      })
      this.sim.after(timeoutMs, () => {
        if (t.settled) return
        this.timeouts++
        if (t.flow != null) this.network.cancel(t.flow)
        this.#settle(t, new RequestTimeoutError(`chunk ${index} took over ${timeoutMs} ms`))
        const conn = server.connections.get(client.index)
        if (conn?.active === t) {
          conn.active = undefined
          this.#pull(server, client, conn)
        }
      })
    })
  }

  #settle (t: Transfer, err?: Error): void {
    if (t.settled) return
    t.settled = true
    if (err == null) t.resolve(EMPTY)
    else t.reject(err)
  }

  /** Starts the connection's next response once the one before has left. */
  #pull (server: SimAgent, client: SimAgent, conn: Connection): void {
    while (conn.active == null && conn.queue.length > 0) {
      const t = conn.queue.shift() as Transfer
      if (t.settled) continue
      conn.active = t
      const bytes = Math.min(this.init.chunkBytes, this.init.imageBytes - t.index * this.init.chunkBytes)
      this.sent += bytes
      t.flow = this.network.start(server.index, client.index, bytes, () => {
        conn.active = undefined
        this.#settle(t)
        this.#pull(server, client, conn)
      })
    }
  }

  noteProgress (agent: SimAgent): void {
    if (agent.index !== 0 && agent.heldCount === this.n && agent.readDone && Number.isNaN(agent.finishedAt)) this.#done(agent)
  }

  #done (agent: SimAgent): void {
    agent.finishedAt = this.sim.now
    this.#finished++
  }

  /** Reads the image on every downloader at t = 0 and runs until all are done or the limit. */
  async run (): Promise<SwarmResult> {
    const { imageBytes, hostRate, downloaders } = this.init
    for (const agent of this.agents.slice(1)) {
      const session = new Session(agent, 'image', 'key', this.manifest)
      agent.session = session
      session.begin()
      void this.#read(agent, session)
    }
    const boundMs = Math.max(imageBytes / hostRate, imageBytes / hostRate, downloaders * imageBytes / ((downloaders + 1) * hostRate))
    await this.sim.run(() => this.#finished === downloaders, this.init.limitMs ?? boundMs * 10)
    this.#over = true
    for (const agent of this.agents) if (agent.session != null) void agent.session.close(new Error('simulation over'))
    const net = this.network
    let received = 0
    for (let h = 1; h <= downloaders; h++) received += net.carried[net.hostDown(h)]
    const degrees = this.agents.map(a => a.neighbours.length)
    return {
      finished: this.agents.slice(1).map(a => a.finishedAt),
      firstChunk: this.agents.slice(1).map(a => a.firstChunkAt),
      boundMs,
      imageBytes,
      seedSent: net.carried[net.hostUp(0)],
      received,
      sent: this.sent,
      peakUtilisation: net.peakUtilisation,
      reasons: this.reasons,
      timeouts: this.timeouts,
      readFailures: this.readFailures,
      events: this.sim.events,
      peers: { min: Math.min(...degrees), max: Math.max(...degrees), mean: degrees.reduce((a, b) => a + b, 0) / degrees.length }
    }
  }

  async #read (agent: SimAgent, session: Session): Promise<void> {
    const cursor = session.addReader(0, this.n - 1)
    const { readRate, chunkBytes } = this.init
    let readable = 0
    let next = session.chunk(0)
    for (let i = 0; i < this.n; i++) {
      cursor.at(i)
      const current = next
      if (i + 1 < this.n) {
        next = session.chunk(i + 1)
        next.catch(() => {})
      }
      try {
        await current
        if (readRate != null) {
          // The chunk goes to the client at the reader's rate, after the one before it.
          readable = Math.max(readable, this.sim.now) + chunkBytes / readRate
          await new Promise<void>(resolve => { this.sim.at(readable, resolve) })
        }
        if (i === 0) agent.firstChunkAt = this.sim.now
        if (i + 1 === Math.ceil(this.n / 2)) agent.readAt.half = this.sim.now
        if (i + 1 === Math.ceil(this.n * 0.9)) agent.readAt.most = this.sim.now
      } catch {
        if (this.#over) return
        // A 503 to the client (no holder in time): it asks again, as Nova's download would.
        this.readFailures++
        i--
        next = session.chunk(i + 1)
        next.catch(() => {})
      }
    }
    session.removeReader(cursor)
    agent.readDone = true
    this.noteProgress(agent)
  }
}
