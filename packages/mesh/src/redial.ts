import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { ComponentLogger, Connection, Libp2pEvents, Logger, PeerId, Startable, TypedEventTarget } from '@libp2p/interface'
import { DEFAULT_REDIAL_MAX_MS, DEFAULT_REDIAL_MIN_MS } from './constants.ts'

export interface RedialInit {
  /** Multiaddrs ending in `/p2p/<peer id>`. */
  peers: string[]
  minDelayMs?: number
  maxDelayMs?: number
}

export interface RedialComponents {
  peerId: PeerId
  events: TypedEventTarget<Libp2pEvents>
  connectionManager: {
    openConnection: (peer: Multiaddr, options?: { signal?: AbortSignal }) => Promise<Connection>
    getConnections: (peerId?: PeerId) => Connection[]
  }
  logger: ComponentLogger
}

interface Target {
  addr: Multiaddr
  peer: string
  delay: number
  timer?: NodeJS.Timeout
  dialing: boolean
}

/** The `/p2p/<id>` part of a multiaddr, if it has one. */
export function peerIdOf (addr: Multiaddr): string | undefined {
  return addr.getComponents().findLast(c => c.name === 'p2p')?.value
}

/**
 * Keeps the agent connected to its bootstrap peers: dials each at start and, whenever it is not
 * connected to one, again after a wait that doubles from `minDelayMs` up to `maxDelayMs` (with
 * jitter). So agents started in any order find each other, and a restarted peer is rejoined.
 * libp2p's own bootstrap module dials once and leaves reconnection to discovery.
 */
export class Redial implements Startable {
  readonly [Symbol.toStringTag] = '@peerglance/redial'
  readonly #components: RedialComponents
  readonly #targets: Target[]
  readonly #min: number
  readonly #max: number
  readonly #log: Logger
  #running = false
  #shutdown = new AbortController()

  constructor (components: RedialComponents, init: RedialInit) {
    this.#components = components
    this.#log = components.logger.forComponent('peerglance:redial')
    this.#min = init.minDelayMs ?? DEFAULT_REDIAL_MIN_MS
    this.#max = init.maxDelayMs ?? DEFAULT_REDIAL_MAX_MS
    const self = components.peerId.toString()
    this.#targets = []
    for (const text of init.peers) {
      const addr = multiaddr(text)
      const peer = peerIdOf(addr)
      if (peer == null) throw new Error(`bootstrap address ${text} has no /p2p/<peer id>`)
      // Every agent may be given the same list, its own address included.
      if (peer === self) continue
      this.#targets.push({ addr, peer, delay: this.#min, dialing: false })
    }
    this.onDisconnect = this.onDisconnect.bind(this)
    this.onConnect = this.onConnect.bind(this)
  }

  isStarted (): boolean { return this.#running }

  async start (): Promise<void> {
    if (this.#running) return
    this.#running = true
    this.#shutdown = new AbortController()
    this.#components.events.addEventListener('peer:disconnect', this.onDisconnect)
    this.#components.events.addEventListener('peer:connect', this.onConnect)
  }

  /** Dials after libp2p has started listening, so an inbound connection can never race our start. */
  afterStart (): void {
    for (const target of this.#targets) this.#schedule(target, 0)
  }

  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    this.#shutdown.abort()
    this.#components.events.removeEventListener('peer:disconnect', this.onDisconnect)
    this.#components.events.removeEventListener('peer:connect', this.onConnect)
    for (const target of this.#targets) clearTimeout(target.timer)
  }

  private onConnect (evt: CustomEvent<PeerId>): void {
    const peer = evt.detail.toString()
    for (const target of this.#targets) {
      if (target.peer === peer) target.delay = this.#min
    }
  }

  private onDisconnect (evt: CustomEvent<PeerId>): void {
    const peer = evt.detail.toString()
    for (const target of this.#targets) {
      if (target.peer === peer) this.#schedule(target, target.delay)
    }
  }

  #schedule (target: Target, delay: number): void {
    if (!this.#running || target.timer != null || target.dialing) return
    const jittered = delay === 0 ? 0 : delay * (0.75 + Math.random() / 2)
    target.timer = setTimeout(() => {
      target.timer = undefined
      void this.#dial(target)
    }, jittered)
    target.timer.unref()
  }

  async #dial (target: Target): Promise<void> {
    if (!this.#running) return
    const connected = this.#components.connectionManager.getConnections().some(c => c.remotePeer.toString() === target.peer && c.status === 'open')
    if (connected) return
    target.dialing = true
    try {
      await this.#components.connectionManager.openConnection(target.addr, { signal: AbortSignal.any([this.#shutdown.signal, AbortSignal.timeout(10_000)]) })
      target.delay = this.#min
      this.#log('connected to bootstrap peer %s', target.peer)
    } catch (err) {
      target.delay = Math.min(this.#max, Math.max(this.#min, target.delay * 2))
      this.#log('dial of bootstrap peer %s failed, next in ~%d ms - %e', target.peer, target.delay, err)
      target.dialing = false
      this.#schedule(target, target.delay)
      return
    }
    target.dialing = false
  }
}

export function redial (init: RedialInit): (components: RedialComponents) => Redial {
  return (components) => new Redial(components, init)
}
