import { setMaxListeners } from 'node:events'
import type { ComponentLogger, Connection, Logger, PeerId, Startable } from '@libp2p/interface'
import { DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS } from './constants.ts'

export interface LivenessInit {
  /** How often every connection is pinged. */
  intervalMs?: number
  /** A connection whose ping is not answered within this long is closed. */
  timeoutMs?: number
}

export interface LivenessComponents {
  connectionManager: { getConnections: () => Connection[] }
  logger: ComponentLogger
}

/** yamux answers a ping frame inside its frame decoder: no stream, no protocol negotiation. */
interface PingingMuxer { ping: (options?: { signal?: AbortSignal }) => Promise<number> }

/**
 * The parts of @libp2p/yamux's muxer a tagged ping uses (TypeScript calls them private): the id
 * its next ping carries (any u32; the answer must echo it), and its handler of ping frames.
 */
interface TaggingMuxer {
  nextPingID: number
  handlePing: (header: { flag: number, length: number }) => void
}

/** yamux's SYN flag: a ping asked, not answered. */
const PING_SYN = 1

/**
 * What pings say besides "alive": each ping's id is `mine()` (metadata-sync.ts: a tag of the
 * replica's state), and each ping a peer sends is handed to `heard` with its id.
 */
export interface PingTags {
  mine: () => number
  heard: (peer: PeerId, tag: number) => void
}

export class PingTimeoutError extends Error {
  override name = 'PingTimeoutError'
}

/**
 * Closes connections that died silently (a partition, a pulled cable, a frozen host): every
 * `intervalMs` each open connection is pinged with a yamux ping frame, and one whose ping gets no
 * answer within `timeoutMs` is aborted, so the peer set redials the peer. libp2p's connection
 * monitor does the same with a ping stream per connection and round (stream open, multistream
 * negotiation, a peer-store write at each end, ~10 frames), which was 40 % of an idle agent's CPU
 * (docs/benchmarks.md, "The agent at rest"); a ping frame is one 12-byte frame each way.
 */
export class Liveness implements Startable {
  readonly [Symbol.toStringTag] = '@peerglance/liveness'
  readonly #components: LivenessComponents
  readonly #interval: number
  readonly #timeout: number
  readonly #log: Logger
  /** Connections whose ping is unanswered: one at a time each. */
  readonly #pinging = new WeakSet<Connection>()
  /** Muxers whose peer's pings are heard. */
  readonly #hearing = new WeakSet<object>()
  #tags: PingTags | undefined
  #timer: NodeJS.Timeout | undefined
  #shutdown = new AbortController()

  constructor (components: LivenessComponents, init: LivenessInit = {}) {
    this.#components = components
    this.#interval = init.intervalMs ?? DEFAULT_PING_INTERVAL_MS
    this.#timeout = init.timeoutMs ?? DEFAULT_PING_TIMEOUT_MS
    this.#log = components.logger.forComponent('peerglance:liveness')
  }

  start (): void {
    this.#shutdown = new AbortController()
    this.#timer = setInterval(() => { this.#round() }, this.#interval)
    this.#timer.unref()
  }

  stop (): void {
    clearInterval(this.#timer)
    this.#shutdown.abort()
  }

  /**
   * Pings carry `tags.mine()` from the next round on, and the peers' pings go to `tags.heard`
   * (undefined: plain pings again). A peer that predates this sends ids that count up from 0.
   */
  tagPings (tags: PingTags | undefined): void {
    this.#tags = tags
  }

  #round (): void {
    // One timer for the whole round, whatever the number of connections.
    const signal = AbortSignal.any([this.#shutdown.signal, AbortSignal.timeout(this.#timeout)])
    setMaxListeners(Infinity, signal)
    for (const connection of this.#components.connectionManager.getConnections()) {
      if (connection.status !== 'open' || this.#pinging.has(connection)) continue
      const muxer = (connection as unknown as { muxer?: Partial<PingingMuxer> }).muxer
      if (typeof muxer?.ping !== 'function') continue
      this.#pinging.add(connection)
      this.#tag(connection, muxer as Partial<TaggingMuxer>)
      muxer.ping({ signal }).then(rtt => {
        connection.rtt = rtt
      }, () => {
        if (this.#shutdown.signal.aborted || connection.status !== 'open') return
        this.#log('no answer to a ping from %p within %d ms, closing the connection', connection.remotePeer, this.#timeout)
        connection.abort(new PingTimeoutError(`no answer to a ping within ${this.#timeout} ms`))
      }).finally(() => { this.#pinging.delete(connection) })
    }
  }

  /** Sets the id of the connection's next ping, and hears the peer's pings (once per muxer). */
  #tag (connection: Connection, muxer: Partial<TaggingMuxer>): void {
    const tags = this.#tags
    if (tags == null || typeof muxer.nextPingID !== 'number' || typeof muxer.handlePing !== 'function') return
    muxer.nextPingID = tags.mine() >>> 0
    if (this.#hearing.has(muxer)) return
    this.#hearing.add(muxer)
    const handle = muxer.handlePing
    muxer.handlePing = header => {
      if (header.flag === PING_SYN) {
        try {
          this.#tags?.heard(connection.remotePeer, header.length)
        } catch (err) {
          this.#log.error('a ping tag listener failed - %e', err)
        }
      }
      handle.call(muxer, header)
    }
  }
}

export function liveness (init: LivenessInit = {}): (components: LivenessComponents) => Liveness {
  return (components) => new Liveness(components, init)
}
