import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { ComponentLogger, Connection, IdentifyResult, Libp2pEvents, Logger, PeerId, PeerInfo, PeerStore, Startable, Stream, StreamHandler, TypedEventTarget } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import {
  DEFAULT_MAX_PEERS, DEFAULT_PEER_ANNOUNCE_INTERVAL_MS, DEFAULT_PEER_TARGET, DEFAULT_REDIAL_MAX_MS, DEFAULT_REDIAL_MIN_MS,
  DEFAULT_ROTATE_INTERVAL_MS, CHUNK_PROTOCOL, PEERS_TOPIC, WANT_TOPIC
} from './constants.ts'
import { shuffle } from './shuffle.ts'

export interface PeerExchangeInit {
  /** Multiaddrs ending in `/p2p/<peer id>`, dialled at start and whenever the agent is short of peers. */
  bootstrap?: string[]
  /** How often each agent repeats its addresses on the peers topic, at least (more agents known space it out further). */
  intervalMs?: number
  /** Peers the agent dials until it holds this many connections. */
  target?: number
  /** Connections above this many are closed, newest inbound first chosen at random. */
  maxPeers?: number
  /** First and largest wait before a peer whose dial failed is tried again (doubling, jittered). */
  minDelayMs?: number
  maxDelayMs?: number
  /** How often an agent that has enough peers still dials one random other (keeps the overlay mixed). */
  rotateIntervalMs?: number
  /** Whether this agent holds an image (its manifest), to answer another agent's `want`. */
  holds?: (imageId: string) => Promise<boolean>
  /** The site this agent says it belongs to in its announcements (`agent.site`). */
  site?: string
}

export interface PeerExchangeComponents {
  peerId: PeerId
  peerStore: PeerStore
  events: TypedEventTarget<Libp2pEvents>
  addressManager: { getAddresses: () => Multiaddr[] }
  connectionManager: {
    openConnection: (peer: PeerId | Multiaddr, options?: { signal?: AbortSignal }) => Promise<Connection>
    getConnections: (peerId?: PeerId) => Connection[]
  }
  logger: ComponentLogger
  registrar: {
    handle: (protocol: string, handler: StreamHandler, options?: { maxInboundStreams?: number }) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
  /** The gossipsub service, registered under this name. */
  pubsub: GossipSub
}

/**
 * Asked right after connecting while short of peers: the answer is up to SAMPLE_SIZE agents'
 * addresses the answering agent knows (connected ones first). gossiped announcements reach a
 * newcomer only through its one bootstrap peer's gossipsub mesh, which it may not be part of.
 */
export const PEER_SAMPLE_PROTOCOL = '/peerglance/peer-sample/1.0.0'
const SAMPLE_SIZE = 16

interface Announcement { addrs: string[], site?: string }

/** What a site name may look like on the wire (the config's `agent.site` pattern). */
const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/
interface Want { image: string, addrs: string[] }

/** A connection younger than this is not pruned. */
const PRUNE_GRACE_MS = 10_000
/** One `want` per image per this long, however many reads wait for it. */
const WANT_GAP_MS = 2_000

interface Candidate {
  peer: PeerId | undefined
  addrs: Multiaddr[]
  bootstrap: boolean
  failures: number
  /** Not dialled before this time (ms since epoch). */
  nextTry: number
  /** Last time it announced itself or connected (bootstrap peers never expire). */
  seen: number
  dialing: boolean
}

/**
 * Maintenance runs when something changes (a connection opens or closes, a dial ends, a peer is
 * learnt) and when a redial or a prune is due; besides, at most this long apart, for rotation and
 * forgetting. It once ran every second whatever happened (docs/benchmarks.md, "The agent at rest").
 */
const POLL_MS = 10_000
/** Dials in flight at once. */
const PARALLEL_DIALS = 4
const DIAL_TIMEOUT_MS = 5_000
/** Announcements a burst of joining neighbours causes: at most one per this long. */
const MIN_ANNOUNCE_GAP_MS = 5_000
/** A peer that has neither announced itself nor been connected for this long is forgotten (or four announcement intervals, if longer). */
const FORGET_AFTER_MS = 10 * 60_000
/**
 * The periodic announcement is spaced so that all agents' together reach each agent at most about
 * once per this long: every `intervalMs`, or every (agents known × this) when that is longer. At
 * 1,000 agents and 30 s, each agent would otherwise verify and forward 33 announcements a second.
 */
const ANNOUNCE_SPACING_MS = 1_000
/** An agent announces itself when a neighbour subscribes only this long after it started: then it is the newcomer the mesh must learn of. */
const NEWCOMER_MS = 60_000

/** The `/p2p/<id>` part of a multiaddr, if it has one. */
export function peerIdOf (addr: Multiaddr): string | undefined {
  return addr.getComponents().findLast(c => c.name === 'p2p')?.value
}

/**
 * Keeps the agent in a bounded, random set of peers, whatever one address it was given:
 * - learns of agents from its bootstrap list, from their signed announcements on
 *   `peerglance/peers/1` (each agent publishes its own listen addresses as a newcomer, when its
 *   neighbours' subscriptions arrive (at most every 5 s), then every `intervalMs`, or every
 *   ANNOUNCE_SPACING_MS per agent known when that is longer), from its neighbours' peer samples,
 *   from identify on inbound connections, and from discovery (mDNS);
 * - while it holds fewer than `target` connections, dials random known agents (a failed one is
 *   retried after a doubling, jittered wait from `minDelayMs` to `maxDelayMs`), so a peer lost
 *   to a partition or a restart is redialled as soon as it answers;
 * - above `maxPeers` connections, closes random ones (inbound first) older than 10 s that carry no
 *   chunk stream, so the bootstrap agent every other one dialled first does not stay the hub of a star;
 * - when a read finds no peer holding an image, asks the mesh on `peerglance/want/1` (`want()`):
 *   agents that hold it dial the asker;
 * - every `rotateIntervalMs` dials one random agent it is not connected to even when it has
 *   enough, so two sides of a healed partition that each filled their peer sets reconnect.
 * Chunk exchange and sync need direct connections; gossip reaches the rest through gossipsub's mesh.
 */
export class PeerExchange implements Startable {
  readonly [Symbol.toStringTag] = '@peerglance/peer-exchange'
  readonly #components: PeerExchangeComponents
  readonly #interval: number
  readonly #target: number
  readonly #maxPeers: number
  readonly #minDelay: number
  readonly #maxDelay: number
  readonly #rotateInterval: number
  readonly #holds: ((imageId: string) => Promise<boolean>) | undefined
  readonly #wanted = new Map<string, number>()
  readonly #site: string | undefined
  /** The site each agent last announced, and when (by peer id). */
  readonly #sites = new Map<string, { site: string, at: number }>()
  readonly #log: Logger
  /** By peer id (or by address for a bootstrap entry whose id is unknown: never, they carry /p2p). */
  readonly #candidates = new Map<string, Candidate>()
  #running = false
  #startedAt = 0
  /** The next maintenance run, and when it is due (ms since epoch). */
  #timer: NodeJS.Timeout | undefined
  #timerAt = Number.POSITIVE_INFINITY
  #announceTimer: NodeJS.Timeout | undefined
  #soon: NodeJS.Timeout | undefined
  #lastAnnounce = 0
  /**
   * When the next rotation is due. Drawn once per rotation from 0.75 to 0.85 of `rotateInterval`:
   * the check it replaces drew anew every second between 0.75 and 1.25, so it fired a few seconds
   * past 0.75 (~47 s of 60), and benchmarks that wait for 9 agents to connect all-to-all count on it.
   */
  #rotateAt = 0
  #shutdown = new AbortController()

  constructor (components: PeerExchangeComponents, init: PeerExchangeInit = {}) {
    this.#components = components
    this.#interval = init.intervalMs ?? DEFAULT_PEER_ANNOUNCE_INTERVAL_MS
    this.#target = init.target ?? DEFAULT_PEER_TARGET
    this.#maxPeers = Math.max(this.#target, init.maxPeers ?? DEFAULT_MAX_PEERS)
    this.#minDelay = init.minDelayMs ?? DEFAULT_REDIAL_MIN_MS
    this.#maxDelay = init.maxDelayMs ?? DEFAULT_REDIAL_MAX_MS
    this.#rotateInterval = init.rotateIntervalMs ?? DEFAULT_ROTATE_INTERVAL_MS
    this.#holds = init.holds
    this.#site = init.site
    this.#log = components.logger.forComponent('peerglance:peer-exchange')
    const self = components.peerId.toString()
    for (const text of init.bootstrap ?? []) {
      const addr = multiaddr(text)
      const peer = peerIdOf(addr)
      if (peer == null) throw new Error(`bootstrap address ${text} has no /p2p/<peer id>`)
      // Every agent may be given the same list, its own address included.
      if (peer === self) continue
      const known = this.#candidates.get(peer)
      if (known != null) known.addrs.push(addr)
      else this.#candidates.set(peer, { peer: undefined, addrs: [addr], bootstrap: true, failures: 0, nextTry: 0, seen: Infinity, dialing: false })
    }
    this.onMessage = this.onMessage.bind(this)
    this.onSubscriptionChange = this.onSubscriptionChange.bind(this)
    this.onDiscovery = this.onDiscovery.bind(this)
    this.onIdentify = this.onIdentify.bind(this)
    this.onDisconnect = this.onDisconnect.bind(this)
    this.onConnect = this.onConnect.bind(this)
    this.onSampleRequest = this.onSampleRequest.bind(this)
  }

  isStarted (): boolean { return this.#running }

  async start (): Promise<void> {
    if (this.#running) return
    this.#running = true
    this.#shutdown = new AbortController()
    // libp2p reports peers that discovery (mDNS) finds but does not dial them; we do.
    this.#components.events.addEventListener('peer:discovery', this.onDiscovery)
    this.#components.events.addEventListener('peer:identify', this.onIdentify)
    this.#components.events.addEventListener('peer:disconnect', this.onDisconnect)
    this.#components.events.addEventListener('peer:connect', this.onConnect)
    await this.#components.registrar.handle(PEER_SAMPLE_PROTOCOL, this.onSampleRequest, { maxInboundStreams: 4 })
  }

  /** Services start together; gossipsub accepts subscriptions only once it has started, and we dial only once listening. */
  afterStart (): void {
    const pubsub = this.#components.pubsub
    pubsub.subscribe(PEERS_TOPIC)
    pubsub.subscribe(WANT_TOPIC)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.#startedAt = Date.now()
    this.#rotateAt = this.#startedAt + this.#nextRotation()
    this.#scheduleAnnouncement()
    this.#maintain()
  }

  /** The next periodic announcement, spaced by the number of agents known (ANNOUNCE_SPACING_MS). */
  #scheduleAnnouncement (): void {
    if (!this.#running) return
    const wait = this.#announceInterval() * (0.9 + Math.random() / 5)
    this.#announceTimer = setTimeout(() => {
      this.#announceSoon(true)
      this.#scheduleAnnouncement()
    }, wait)
    this.#announceTimer.unref()
  }

  #announceInterval (): number {
    return Math.max(this.#interval, this.#candidates.size * ANNOUNCE_SPACING_MS)
  }

  #nextRotation (): number {
    return this.#rotateInterval * (0.75 + Math.random() / 10)
  }

  /** Long enough to hear several announcements from an agent that is still there. */
  #forgetAfter (): number {
    return Math.max(FORGET_AFTER_MS, 4 * this.#announceInterval())
  }

  /** Maintenance in `ms` at the latest (an earlier run already due is kept). */
  #schedule (ms: number): void {
    if (!this.#running) return
    const at = Date.now() + Math.max(0, ms)
    if (this.#timer != null && this.#timerAt <= at) return
    clearTimeout(this.#timer)
    this.#timerAt = at
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#timerAt = Number.POSITIVE_INFINITY
      this.#maintain()
    }, Math.max(0, ms))
    this.#timer.unref()
  }

  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    this.#shutdown.abort()
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerAt = Number.POSITIVE_INFINITY
    clearTimeout(this.#announceTimer)
    clearTimeout(this.#soon)
    this.#soon = undefined
    const events = this.#components.events
    events.removeEventListener('peer:discovery', this.onDiscovery)
    events.removeEventListener('peer:identify', this.onIdentify)
    events.removeEventListener('peer:disconnect', this.onDisconnect)
    events.removeEventListener('peer:connect', this.onConnect)
    await this.#components.registrar.unhandle(PEER_SAMPLE_PROTOCOL).catch(() => {})
    const pubsub = this.#components.pubsub
    pubsub.removeEventListener('message', this.onMessage)
    pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    try {
      pubsub.unsubscribe(PEERS_TOPIC)
      pubsub.unsubscribe(WANT_TOPIC)
    } catch {}
  }

  /** Distinct peers with an open connection. */
  #connected (): Set<string> {
    const peers = new Set<string>()
    for (const c of this.#components.connectionManager.getConnections()) if (c.status === 'open') peers.add(c.remotePeer.toString())
    return peers
  }

  #maintain (): void {
    if (!this.#running) return
    const now = Date.now()
    const connected = this.#connected()
    const forgetAfter = this.#forgetAfter()
    for (const [key, c] of this.#candidates) {
      if (connected.has(key)) c.seen = now
      else if (!c.dialing && now - c.seen > forgetAfter) this.#candidates.delete(key)
    }
    let next = POLL_MS
    if (connected.size > this.#maxPeers) {
      const spared = this.#prune(connected)
      // Connections spared for their youth may be closed once it is over.
      if (spared != null) next = Math.min(next, spared - now)
    }
    const dialing = [...this.#candidates.values()].filter(c => c.dialing).length
    let wanted = this.#target - connected.size - dialing
    if (wanted <= 0 && dialing === 0 && now >= this.#rotateAt) {
      this.#rotateAt = now + this.#nextRotation()
      wanted = 1
    }
    // Due but put off (dials in flight, or short of peers): those runs come back on their own.
    if (this.#rotateAt > now) next = Math.min(next, this.#rotateAt - now)
    wanted = Math.min(wanted, PARALLEL_DIALS - dialing)
    if (wanted > 0) {
      const waiting = [...this.#candidates].filter(([key, c]) => !connected.has(key) && !c.dialing)
      const eligible = waiting.filter(([, c]) => c.nextTry <= now)
      // Bootstrap peers last: every agent was given the same few, and an agent they closed for
      // having too many should find another rather than come straight back.
      const order = [...shuffle(eligible.filter(([, c]) => !c.bootstrap)), ...shuffle(eligible.filter(([, c]) => c.bootstrap))]
      for (const [, candidate] of order.slice(0, wanted)) void this.#dial(candidate)
      // Short of peers: back when the next candidate waiting out its redial delay may be tried.
      if (order.length < wanted) {
        for (const [, c] of waiting) if (c.nextTry > now) next = Math.min(next, c.nextTry - now)
      }
    }
    this.#schedule(next)
  }

  /** Closes connections above the maximum; returns when the youngest one spared for its youth comes of age, if any was. */
  #prune (connected: Set<string>): number | undefined {
    const excess = connected.size - this.#maxPeers
    // A peer we exchange chunks with is kept: closing it would cut a download short. So is a new
    // one for a while: it may be a holder that dialled us because we asked for an image.
    const now = Date.now()
    let grown: number | undefined
    const busy = (c: Connection): boolean => {
      if (now - c.timeline.open < PRUNE_GRACE_MS) {
        grown = Math.min(grown ?? Number.POSITIVE_INFINITY, c.timeline.open + PRUNE_GRACE_MS)
        return true
      }
      return c.streams.some(s => s.protocol === CHUNK_PROTOCOL)
    }
    const open = this.#components.connectionManager.getConnections().filter(c => c.status === 'open')
    const idle = open.filter(c => !busy(c))
    // Inbound first: those are the ones we did not choose.
    const order = [...shuffle(idle.filter(c => c.direction === 'inbound')), ...shuffle(idle.filter(c => c.direction === 'outbound'))]
    const closing = new Set<string>()
    for (const connection of order) {
      if (closing.size >= excess) break
      const key = connection.remotePeer.toString()
      if (closing.has(key)) continue
      closing.add(key)
      this.#log('closing connection to %p: %d peers, at most %d wanted', connection.remotePeer, connected.size, this.#maxPeers)
      for (const c of this.#components.connectionManager.getConnections(connection.remotePeer)) void c.close().catch(() => {})
    }
    return closing.size < excess ? grown : undefined
  }

  async #dial (candidate: Candidate): Promise<void> {
    candidate.dialing = true
    try {
      const signal = AbortSignal.any([this.#shutdown.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
      if (candidate.peer != null) {
        await this.#components.peerStore.merge(candidate.peer, { multiaddrs: candidate.addrs.map(a => peerIdOf(a) != null ? a.decapsulateCode(421) : a) })
        await this.#components.connectionManager.openConnection(candidate.peer, { signal })
      } else {
        await this.#components.connectionManager.openConnection(candidate.addrs[0], { signal })
      }
      candidate.failures = 0
      candidate.nextTry = 0
    } catch (err) {
      candidate.failures++
      const delay = Math.min(this.#maxDelay, this.#minDelay * 2 ** (candidate.failures - 1)) * (0.75 + Math.random() / 2)
      candidate.nextTry = Date.now() + delay
      this.#log('dial of %s failed, next in ~%d ms - %e', candidate.addrs[0]?.toString(), Math.round(delay), err)
    } finally {
      candidate.dialing = false
      // Another candidate may be dialled now, or this one again once its delay is over.
      this.#schedule(0)
    }
  }

  #learn (peer: PeerId, addrs: Multiaddr[]): void {
    const key = peer.toString()
    if (peer.equals(this.#components.peerId) || addrs.length === 0) return
    const known = this.#candidates.get(key)
    if (known != null) {
      known.peer = peer
      if (!known.bootstrap) known.addrs = addrs
      known.seen = Math.max(known.seen, Date.now())
      return
    }
    this.#candidates.set(key, { peer, addrs, bootstrap: false, failures: 0, nextTry: 0, seen: Date.now(), dialing: false })
    if (this.#connected().size < this.#target) this.#schedule(0)
  }

  private onDisconnect (evt: CustomEvent<PeerId>): void {
    const candidate = this.#candidates.get(evt.detail.toString())
    // Reconnect soon, not at once: a peer that closed us for having too many should not be redialled in a loop.
    if (candidate != null) candidate.nextTry = Math.max(candidate.nextTry, Date.now() + this.#minDelay * (0.75 + Math.random() / 2))
    this.#schedule(0)
  }

  /** One more connection may put the agent above its maximum. */
  private onConnect (): void {
    this.#schedule(0)
  }

  private onIdentify (evt: CustomEvent<IdentifyResult>): void {
    const { peerId, listenAddrs, protocols, connection } = evt.detail
    // Only agents: a peer that does not gossip is no candidate.
    if (!protocols.some(p => p.startsWith('/meshsub/'))) return
    this.#learn(peerId, listenAddrs.filter(a => !isUnspecified(a)))
    if (protocols.includes(PEER_SAMPLE_PROTOCOL) && this.#connected().size < this.#target) {
      void this.#askSample(connection).catch(err => { this.#log('asking %p for peers failed - %e', peerId, err) })
    }
  }

  async #askSample (connection: Connection): Promise<void> {
    const signal = AbortSignal.any([this.#shutdown.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
    const stream = await connection.newStream(PEER_SAMPLE_PROTOCOL, { signal })
    const lp = lpStream(stream, { maxDataLength: 16 * 1024 })
    const addrs = JSON.parse(new TextDecoder().decode((await lp.read({ signal })).subarray())) as unknown
    await stream.close({ signal }).catch(() => {})
    if (!Array.isArray(addrs)) return
    // A member's word for other members' addresses: dialling one that is not an agent of the mesh
    // fails at the membership handshake, and we dial only while short of peers.
    for (const text of addrs.slice(0, SAMPLE_SIZE)) {
      try {
        const addr = multiaddr(String(text))
        const id = peerIdOf(addr)
        if (id != null && this.#candidates.get(id) == null) this.#learn(peerIdFromString(id), [addr])
      } catch {}
    }
    this.#schedule(0)
  }

  private async onSampleRequest (stream: Stream, connection: Connection): Promise<void> {
    const connected = this.#connected()
    const asker = connection.remotePeer.toString()
    const known = [...this.#candidates].filter(([key, c]) => key !== asker && c.addrs.length > 0)
    const sample = [...shuffle(known.filter(([key]) => connected.has(key))), ...shuffle(known.filter(([key]) => !connected.has(key)))]
      .slice(0, SAMPLE_SIZE)
      .map(([key, c]) => peerIdOf(c.addrs[0]) != null ? c.addrs[0].toString() : `${c.addrs[0].toString()}/p2p/${key}`)
    try {
      const lp = lpStream(stream)
      await lp.write(new TextEncoder().encode(JSON.stringify(sample)), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      await stream.close({ signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  /**
   * A newcomer announces itself as its neighbours' subscriptions arrive, so the mesh learns of it
   * at once. Agents already in the mesh do not answer each join with an announcement to everyone:
   * the newcomer learns of them from its neighbours' peer samples, and at 1,000 agents rotating
   * their connections that would be ~30 mesh-wide announcements a second.
   */
  private onSubscriptionChange (evt: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void {
    if (Date.now() - this.#startedAt > NEWCOMER_MS) return
    if (evt.detail.subscriptions.some(s => s.topic === PEERS_TOPIC && s.subscribe)) this.#announceSoon(false)
  }

  /** Coalesces the announcements a burst of joins would cause. */
  #announceSoon (periodic: boolean): void {
    if (!this.#running || this.#soon != null) return
    const wait = periodic ? 50 : Math.max(50, this.#lastAnnounce + MIN_ANNOUNCE_GAP_MS - Date.now())
    this.#soon = setTimeout(() => {
      this.#soon = undefined
      void this.#announce()
    }, wait)
    this.#soon.unref()
  }

  async #announce (): Promise<void> {
    const addrs = this.#components.addressManager.getAddresses().map(a => a.toString())
    if (addrs.length === 0) return
    this.#lastAnnounce = Date.now()
    const body: Announcement = this.#site == null ? { addrs } : { addrs, site: this.#site }
    try {
      await this.#components.pubsub.publish(PEERS_TOPIC, new TextEncoder().encode(JSON.stringify(body)))
    } catch (err) {
      this.#log('could not announce addresses - %e', err)
    }
  }

  /**
   * Asks the whole mesh for an image none of this agent's peers could give: agents that hold it
   * dial this one (a connection that then carries chunks, so it is not pruned while it does).
   */
  want (imageId: string): void {
    const now = Date.now()
    if (!this.#running || now - (this.#wanted.get(imageId) ?? 0) < WANT_GAP_MS) return
    this.#wanted.set(imageId, now)
    for (const [id, at] of this.#wanted) if (now - at > WANT_GAP_MS) this.#wanted.delete(id)
    const body: Want = { image: imageId, addrs: this.#components.addressManager.getAddresses().map(a => a.toString()) }
    this.#components.pubsub.publish(WANT_TOPIC, new TextEncoder().encode(JSON.stringify(body))).catch(err => {
      this.#log('could not ask for image %s - %e', imageId, err)
    })
  }

  async #answerWant (from: PeerId, want: Want): Promise<void> {
    if (typeof want.image !== 'string' || this.#components.connectionManager.getConnections(from).length > 0) return
    if (this.#holds == null || !await this.#holds(want.image)) return
    const addrs = this.#ownAddrs(from, want.addrs)
    if (addrs.length === 0) return
    this.#log('dialling %p, which wants image %s we hold', from, want.image)
    this.#learn(from, addrs)
    const candidate = this.#candidates.get(from.toString())
    if (candidate != null && !candidate.dialing) await this.#dial(candidate)
  }

  /** Only addresses of the signer itself: a peer cannot point us at somebody else. */
  #ownAddrs (from: PeerId, addrs: unknown): Multiaddr[] {
    if (!Array.isArray(addrs)) return []
    try {
      return addrs.slice(0, 16).map(a => multiaddr(String(a))).filter(a => peerIdOf(a) === from.toString())
    } catch {
      return []
    }
  }

  private onDiscovery (evt: CustomEvent<PeerInfo>): void {
    const { id, multiaddrs } = evt.detail
    this.#learn(id, multiaddrs)
  }

  private onMessage (evt: CustomEvent<Message>): void {
    const msg = evt.detail
    if ((msg.topic !== PEERS_TOPIC && msg.topic !== WANT_TOPIC) || msg.type !== 'signed') return
    const from = msg.from
    if (from.equals(this.#components.peerId)) return
    let body: Announcement | Want
    try {
      body = JSON.parse(new TextDecoder().decode(msg.data)) as Announcement | Want
    } catch {
      return
    }
    if (msg.topic === WANT_TOPIC) {
      void this.#answerWant(from, body as Want).catch(err => { this.#log('answering a want failed - %e', err) })
      return
    }
    const { site } = body as Announcement
    if (typeof site === 'string' && SITE_NAME.test(site)) this.#sites.set(from.toString(), { site, at: Date.now() })
    this.#learn(from, this.#ownAddrs(from, body.addrs))
  }

  /**
   * The sites agents announced lately (each agent's signed announcement names its own site, so an
   * agent can only place itself), and how many agents in each; this agent's own included.
   */
  sites (): Map<string, number> {
    const counts = new Map<string, number>()
    if (this.#site != null) counts.set(this.#site, 1)
    const now = Date.now()
    const forgetAfter = this.#forgetAfter()
    for (const [peer, { site, at }] of this.#sites) {
      if (now - at > forgetAfter) { this.#sites.delete(peer); continue }
      counts.set(site, (counts.get(site) ?? 0) + 1)
    }
    return counts
  }
}

function isUnspecified (addr: Multiaddr): boolean {
  const host = addr.getComponents()[0]?.value
  return host === '0.0.0.0' || host === '::'
}

export function peerExchange (init: PeerExchangeInit = {}): (components: PeerExchangeComponents) => PeerExchange {
  return (components) => new PeerExchange(components, init)
}
