import type { Message } from '@libp2p/gossipsub'
import type { MeshLibp2p } from './node.ts'

/**
 * `peerglance/prefetch/1`: an operator on one agent asks others to fetch an image now
 * (`peerglance prefetch IMAGE --agents all|ID…`). The order is one gossip message, so it reaches
 * a thousand agents as metadata does, and each agent named in it (or every agent, for `all`)
 * queues the image in its cache. Agents that are down when it is sent miss it; the command shows
 * which agents did not get there.
 *
 * A member may send orders, as a member may write metadata. What a compromised one gains by it is
 * traffic and cache churn, bounded: orders name images the receiver already knows of (or learns
 * within EXPECT_MS), go through the same cache (its cap, pins and the mesh's last copies hold), and
 * each sender gets ORDERS_PER_MINUTE.
 */
export const PREFETCH_TOPIC = 'peerglance/prefetch/1'

export interface PrefetchOrder {
  image: string
  /** Peer ids, or 'all'. */
  agents: 'all' | string[]
}

const ORDERS_PER_MINUTE = 30
const MAX_AGENTS = 10_000
const MAX_ID_LENGTH = 128

export class PrefetchOrders {
  readonly #libp2p: MeshLibp2p
  readonly #onOrder: (imageId: string, from: string) => void
  /** Sender → times of its orders in the last minute. */
  readonly #recent = new Map<string, number[]>()
  #running = false

  constructor (libp2p: MeshLibp2p, onOrder: (imageId: string, from: string) => void) {
    this.#libp2p = libp2p
    this.#onOrder = onOrder
    this.onMessage = this.onMessage.bind(this)
  }

  start (): void {
    if (this.#running) return
    this.#running = true
    const pubsub = this.#libp2p.services.pubsub
    pubsub.subscribe(PREFETCH_TOPIC)
    pubsub.addEventListener('message', this.onMessage)
  }

  stop (): void {
    if (!this.#running) return
    this.#running = false
    const pubsub = this.#libp2p.services.pubsub
    pubsub.removeEventListener('message', this.onMessage)
    try { pubsub.unsubscribe(PREFETCH_TOPIC) } catch {}
  }

  /** Sends the order to the mesh; this agent acts on it too when it is one of the agents named. */
  async send (order: PrefetchOrder): Promise<void> {
    const self = this.#libp2p.peerId.toString()
    if (order.agents === 'all' || order.agents.includes(self)) this.#onOrder(order.image, self)
    if (order.agents !== 'all' && order.agents.every(a => a === self)) return
    await this.#libp2p.services.pubsub.publish(PREFETCH_TOPIC, new TextEncoder().encode(JSON.stringify(order)))
  }

  onMessage (event: CustomEvent<Message>): void {
    const message = event.detail
    if (message.topic !== PREFETCH_TOPIC || message.type !== 'signed') return
    const order = parseOrder(message.data)
    if (order == null) return
    const self = this.#libp2p.peerId.toString()
    if (order.agents !== 'all' && !order.agents.includes(self)) return
    const from = message.from.toString()
    if (!this.#admit(from)) return
    this.#onOrder(order.image, from)
  }

  #admit (from: string): boolean {
    const now = Date.now()
    const times = (this.#recent.get(from) ?? []).filter(t => now - t < 60_000)
    for (const [sender, list] of this.#recent) if (list.every(t => now - t >= 60_000)) this.#recent.delete(sender)
    if (times.length >= ORDERS_PER_MINUTE) return false
    times.push(now)
    this.#recent.set(from, times)
    return true
  }
}

/** An order as sent, or undefined for anything else. */
export function parseOrder (data: Uint8Array): PrefetchOrder | undefined {
  let doc: unknown
  try { doc = JSON.parse(new TextDecoder().decode(data)) } catch { return undefined }
  if (typeof doc !== 'object' || doc == null) return undefined
  const { image, agents } = doc as Record<string, unknown>
  if (typeof image !== 'string' || image === '' || image.length > MAX_ID_LENGTH) return undefined
  if (agents === 'all') return { image, agents }
  if (!Array.isArray(agents) || agents.length === 0 || agents.length > MAX_AGENTS) return undefined
  if (!agents.every(a => typeof a === 'string' && a.length > 0 && a.length <= MAX_ID_LENGTH)) return undefined
  return { image, agents: agents as string[] }
}
