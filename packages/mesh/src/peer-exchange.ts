import { multiaddr } from '@multiformats/multiaddr'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { ComponentLogger, Connection, Libp2pEvents, Logger, PeerId, PeerInfo, PeerStore, Startable, TypedEventTarget } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { DEFAULT_PEER_ANNOUNCE_INTERVAL_MS, PEERS_TOPIC } from './constants.ts'
import { peerIdOf } from './redial.ts'

export interface PeerExchangeInit {
  intervalMs?: number
  /** Do not dial announced peers once this many are connected. */
  maxPeers?: number
}

export interface PeerExchangeComponents {
  peerId: PeerId
  peerStore: PeerStore
  events: TypedEventTarget<Libp2pEvents>
  addressManager: { getAddresses: () => Multiaddr[] }
  connectionManager: {
    openConnection: (peer: PeerId, options?: { signal?: AbortSignal }) => Promise<Connection>
    getConnections: (peerId?: PeerId) => Connection[]
  }
  logger: ComponentLogger
  /** The gossipsub service, registered under this name. */
  pubsub: GossipSub
}

interface Announcement { addrs: string[] }

/**
 * Dials the peers discovery finds (mDNS, when enabled), and lets agents that only know a common
 * bootstrap peer find each other: each agent publishes its
 * own listen addresses on `peerglance/peers/1` (signed, so the sender is the peer they belong to)
 * at start, whenever a peer joins the topic, and every `intervalMs`; an agent that hears of a
 * peer it is not connected to dials it. Chunk exchange needs direct connections, gossip does not.
 */
export class PeerExchange implements Startable {
  readonly [Symbol.toStringTag] = '@peerglance/peer-exchange'
  readonly #components: PeerExchangeComponents
  readonly #interval: number
  readonly #maxPeers: number
  readonly #log: Logger
  #running = false
  #timer: NodeJS.Timeout | undefined
  #soon: NodeJS.Timeout | undefined
  #shutdown = new AbortController()
  readonly #dialing = new Set<string>()

  constructor (components: PeerExchangeComponents, init: PeerExchangeInit = {}) {
    this.#components = components
    this.#interval = init.intervalMs ?? DEFAULT_PEER_ANNOUNCE_INTERVAL_MS
    this.#maxPeers = init.maxPeers ?? 64
    this.#log = components.logger.forComponent('peerglance:peer-exchange')
    this.onMessage = this.onMessage.bind(this)
    this.onSubscriptionChange = this.onSubscriptionChange.bind(this)
    this.onDiscovery = this.onDiscovery.bind(this)
  }

  isStarted (): boolean { return this.#running }

  async start (): Promise<void> {
    if (this.#running) return
    this.#running = true
    this.#shutdown = new AbortController()
    // libp2p reports peers that discovery (mDNS) finds but does not dial them; we do.
    this.#components.events.addEventListener('peer:discovery', this.onDiscovery)
  }

  /** Services start together; gossipsub accepts subscriptions only once it has started. */
  afterStart (): void {
    const pubsub = this.#components.pubsub
    pubsub.subscribe(PEERS_TOPIC)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.#timer = setInterval(() => { this.#announceSoon() }, this.#interval)
    this.#timer.unref()
  }

  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    this.#shutdown.abort()
    clearInterval(this.#timer)
    clearTimeout(this.#soon)
    this.#components.events.removeEventListener('peer:discovery', this.onDiscovery)
    const pubsub = this.#components.pubsub
    pubsub.removeEventListener('message', this.onMessage)
    pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    try {
      pubsub.unsubscribe(PEERS_TOPIC)
    } catch {}
  }

  private onSubscriptionChange (evt: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void {
    if (evt.detail.subscriptions.some(s => s.topic === PEERS_TOPIC && s.subscribe)) this.#announceSoon()
  }

  /** Coalesces the announcements a burst of joins would cause. */
  #announceSoon (): void {
    if (!this.#running || this.#soon != null) return
    this.#soon = setTimeout(() => {
      this.#soon = undefined
      void this.#announce()
    }, 50)
    this.#soon.unref()
  }

  async #announce (): Promise<void> {
    const addrs = this.#components.addressManager.getAddresses().map(a => a.toString())
    if (addrs.length === 0) return
    const body: Announcement = { addrs }
    try {
      await this.#components.pubsub.publish(PEERS_TOPIC, new TextEncoder().encode(JSON.stringify(body)))
    } catch (err) {
      this.#log('could not announce addresses - %e', err)
    }
  }

  private onDiscovery (evt: CustomEvent<PeerInfo>): void {
    const { id, multiaddrs } = evt.detail
    if (id.equals(this.#components.peerId) || multiaddrs.length === 0) return
    void this.#maybeDial(id, multiaddrs)
  }

  private onMessage (evt: CustomEvent<Message>): void {
    const msg = evt.detail
    if (msg.topic !== PEERS_TOPIC || msg.type !== 'signed') return
    const from = msg.from
    if (from.equals(this.#components.peerId)) return
    let addrs: Multiaddr[]
    try {
      const body = JSON.parse(new TextDecoder().decode(msg.data)) as Announcement
      if (!Array.isArray(body.addrs)) return
      // Only addresses of the signer itself: a peer cannot point us at somebody else.
      addrs = body.addrs.slice(0, 16).map(a => multiaddr(String(a))).filter(a => peerIdOf(a) === from.toString())
    } catch {
      return
    }
    if (addrs.length === 0) return
    void this.#maybeDial(from, addrs)
  }

  async #maybeDial (peer: PeerId, addrs: Multiaddr[]): Promise<void> {
    const key = peer.toString()
    const connections = this.#components.connectionManager.getConnections()
    if (this.#dialing.has(key) || connections.some(c => c.remotePeer.equals(peer))) return
    if (new Set(connections.map(c => c.remotePeer.toString())).size >= this.#maxPeers) return
    this.#dialing.add(key)
    try {
      await this.#components.peerStore.merge(peer, { multiaddrs: addrs.map(a => peerIdOf(a) != null ? a.decapsulateCode(421) : a) })
      await this.#components.connectionManager.openConnection(peer, { signal: AbortSignal.any([this.#shutdown.signal, AbortSignal.timeout(10_000)]) })
      this.#log('connected to announced peer %p', peer)
    } catch (err) {
      this.#log('dial of announced peer %p failed - %e', peer, err)
    } finally {
      this.#dialing.delete(key)
    }
  }
}

export function peerExchange (init: PeerExchangeInit = {}): (components: PeerExchangeComponents) => PeerExchange {
  return (components) => new PeerExchange(components, init)
}
