import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'

/**
 * `/peerglance/holdings/1.0.0`: one request, one answer, for operators' views of the mesh. The
 * requester opens a stream and sends nothing; the responder sends one length-prefixed JSON
 * document `{ images: [[imageId, share]] }` with the share (0..1) of each image it holds, and
 * closes. Only what a dashboard shows: no decision of this agent rests on a peer's answer.
 */
export const HOLDINGS_PROTOCOL = '/peerglance/holdings/1.0.0'

/** Large enough for ~20,000 images; an answer beyond it is refused. */
const MAX_ANSWER_BYTES = 1024 * 1024
const ASK_TIMEOUT_MS = 2000
const PEERS_AT_ONCE = 16

export interface PeerHoldings {
  peer: string
  /** Image id → share of its chunks the peer holds; absent when the peer did not answer. */
  images?: Record<string, number>
  error?: string
}

export class HoldingsExchange {
  readonly #libp2p: Libp2p
  readonly #local: () => Promise<Array<[string, number]>>

  constructor (libp2p: Libp2p, local: () => Promise<Array<[string, number]>>) {
    this.#libp2p = libp2p
    this.#local = local
    this.serve = this.serve.bind(this)
  }

  async start (): Promise<void> {
    await this.#libp2p.handle(HOLDINGS_PROTOCOL, this.serve, { maxInboundStreams: 4 })
  }

  async stop (): Promise<void> {
    await this.#libp2p.unhandle(HOLDINGS_PROTOCOL)
  }

  async serve (stream: Stream): Promise<void> {
    const signal = AbortSignal.timeout(ASK_TIMEOUT_MS * 2)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_ANSWER_BYTES })
      await lp.write(new TextEncoder().encode(JSON.stringify({ images: await this.#local() })), { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  /**
   * The holdings of the peers named (dialled if need be), or of every connected peer, asked a few
   * at a time; a peer that fails or cannot be named says why.
   */
  async askAll (named?: readonly string[]): Promise<PeerHoldings[]> {
    const self = this.#libp2p.peerId.toString()
    const peers: Array<PeerId | PeerHoldings> = named == null
      ? this.#libp2p.getPeers()
      : named.filter(id => id !== self).map(id => { try { return peerIdFromString(id) } catch { return { peer: id, error: 'not a peer id' } } })
    const out: PeerHoldings[] = []
    for (let i = 0; i < peers.length; i += PEERS_AT_ONCE) {
      out.push(...await Promise.all(peers.slice(i, i + PEERS_AT_ONCE).map(async peer => 'peer' in peer ? peer : await this.#ask(peer))))
    }
    return out
  }

  async #ask (peer: PeerId): Promise<PeerHoldings> {
    const signal = AbortSignal.timeout(ASK_TIMEOUT_MS)
    try {
      const stream = await this.#libp2p.dialProtocol(peer, HOLDINGS_PROTOCOL, { signal })
      const lp = lpStream(stream, { maxDataLength: MAX_ANSWER_BYTES, maxBufferSize: MAX_ANSWER_BYTES })
      const doc = JSON.parse(new TextDecoder().decode((await lp.read({ signal })).subarray())) as { images?: unknown }
      await stream.close({ signal }).catch(() => {})
      const images: Record<string, number> = {}
      if (Array.isArray(doc.images)) {
        for (const entry of doc.images) {
          if (Array.isArray(entry) && typeof entry[0] === 'string' && typeof entry[1] === 'number' && entry[1] >= 0 && entry[1] <= 1) images[entry[0]] = entry[1]
        }
      }
      return { peer: peer.toString(), images }
    } catch (err) {
      return { peer: peer.toString(), error: (err as Error).message }
    }
  }
}
