import { CID_BYTES, cidFromBytes, isChunkCid } from '@peerglance/interface'
/**
 * The answering side of the chunk exchange (chunk-exchange.ts has the protocol): requests on a
 * stream are answered in order, each prepared as soon as it arrives (a disk read overlaps the
 * previous send); ANNOUNCEs go straight to the swarm. Chunks come from the local store.
 */
import type { ChunkBlocks } from '@peerglance/interface'
import type { Logger, PeerId } from '@libp2p/interface'
import { MAX_QUEUED_REQUESTS } from './constants.ts'
import { NotStartedError, ProtocolError } from './errors.ts'
import {
  BULK_TAKES_ANNOUNCE, BULK_WITH_FLAGS, CODE_ERROR, CODE_NOT_FOUND, CODE_OK, CODE_SENT_ELSEWHERE, collect, FRAME_ANNOUNCE, FRAME_BULK, FRAME_GET, FRAME_HAVE,
  FRAME_MANIFEST, frame, FrameReader, GET_ONCE, HAVE_NONE, MAX_BULK_ANNOUNCE_BODY, MAX_ERROR_BODY, readNoteHead, setBit, stateByte
} from './framing.ts'
import type { FrameHeader, HaveSelf, HaveState } from './framing.ts'
import type { ExchangeTraffic } from './exchange-client.ts'
import type { FrameStream } from './frame-stream.ts'
import { SeedLedger } from './seed-ledger.ts'

/** Request bodies: a HAVE for 100k chunks (100 GiB at 1 MiB) is 3.6 MB. */
const MAX_REQUEST_BODY = 4 * 1024 * 1024
/**
 * Answers prepared ahead of the one being sent, per stream. The rest of a stream's queue waits as
 * requests: a peer that pipelines 64 GETs and reads nothing must not make us hold 64 chunks
 * (times every stream it opens) in memory.
 */
const PREPARED_AHEAD = 4
/** Bodies of the requests waiting on one stream: an honest requester pipelines 2 (HAVEs of 4 MiB at most). */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024
/** Files checked at once while answering a HAVE. */
const HAVE_CONCURRENCY = 16
/** HAVE answers from the store kept (per image key and part) while the store's generation stays. */
const MAX_KEPT_HAVES = 64

/** What a peer said of its holdings of one image: in a HAVE request, or in an ANNOUNCE. */
export interface HaveNote {
  state: HaveState
  /** The sender is a downloader connected to a seed (framing.ts, NEAR_SEED). */
  nearSeed?: boolean
  /** Chunks in the image. */
  total: number
  /** HAVE: the asker's bits for indices `from`… (byte-aligned: `from` is a multiple of 8). */
  from?: number
  bits?: Uint8Array
  /** ANNOUNCE: indices stored since the last one. */
  indices?: number[]
}

/** The swarm's side of HAVE and ANNOUNCE. */
export interface HaveHandler {
  /**
   * A peer asked what we hold of image `key` and told us what it holds. Returns our state and,
   * when a download session knows it without looking at the store, our bitfield of the whole image.
   */
  asked: (peer: PeerId, key: string, note: HaveNote) => HaveSelf & { bits?: Uint8Array }
  announced: (peer: PeerId, key: string, note: HaveNote) => void
}

/** The slice of libp2p the exchange uses. */

/** What the server side did, for tests and logs. */
export interface ExchangeStats {
  getsServed: number
  /** Of those, GETs that came on a bulk channel (bulk-channel.ts), not on libp2p. */
  bulkGetsServed: number
  chunksNotFound: number
  /** First fetches refused because another downloader got the chunk from us lately (seed-ledger.ts). */
  refusedOnce: number
  bytesServed: number
  havesServed: number
  /** HAVE answers that checked chunk files (no session knew the answer, nor a kept one). */
  havesFromFiles: number
  manifestsServed: number
  /** ANNOUNCEs heard, and of those the ones that came on a bulk channel. */
  announcesHeard: number
  bulkAnnouncesHeard: number
  /** Bulk channels (bulk-channel.ts) members opened to us, and connections refused there before any frame. */
  bulkChannels: number
  bulkRefused: number
}


export interface ServerComponents {
  /** What chunks are read from. */
  blocks: ChunkBlocks
  /** The manifest bytes this agent has for an image, for MANIFEST requests. */
  getManifestBytes: (imageId: string) => Promise<Uint8Array | undefined>
  /** Who holds what: answers HAVE requests and hears ANNOUNCEs (the swarm). */
  haves?: HaveHandler
  traffic?: ExchangeTraffic
}

/** What the server asks of the exchange it belongs to. */
export interface ServerHost {
  running: () => boolean
  /** The port of this agent's bulk channel (bulk-channel.ts), for BULK requests; undefined when it has none. */
  bulkPort: () => number | undefined
}

interface Reply {
  type: number
  code: number
  id: number
  body?: Uint8Array
  /** A chunk sent as a first fetch from this seed (seed-ledger.ts). */
  firstFetch?: string
  /** Hands the body's buffer back to the store once it is sent (a leased chunk read). */
  release?: () => void
}


function noop (): void {}

/** The length of a frame the bulk channel takes (a GET of one CID, or an ANNOUNCE); anything else ends the channel. */
function bulkRequest (header: FrameHeader): number {
  if (header.type === FRAME_GET && header.length === CID_BYTES) return header.length
  if (header.type === FRAME_ANNOUNCE) return header.length
  throw new ProtocolError(`request type ${header.type} of ${header.length} bytes on the bulk channel`)
}

export class ExchangeServer {
  readonly stats: ExchangeStats = {
    getsServed: 0, bulkGetsServed: 0, chunksNotFound: 0, refusedOnce: 0, bytesServed: 0, havesServed: 0, havesFromFiles: 0, manifestsServed: 0,
    announcesHeard: 0, bulkAnnouncesHeard: 0, bulkChannels: 0, bulkRefused: 0
  }
  readonly #ledger = new SeedLedger()
  readonly #components: ServerComponents
  readonly #log: Logger
  readonly #host: ServerHost
  readonly #inbound = new Set<FrameStream>()
  /**
   * HAVE answers made by checking chunk files, kept while the store is unchanged. A seed has no
   * session to answer from, and downloaders that wait for a chunk nobody holds ask every peer each
   * second: answering each from the files was 15-20 % of the agents' CPU in the shaped swarm once
   * the bulk channel made those answers quick (docs/benchmarks.md, issue 8).
   */
  readonly #keptHaves = new Map<string, { generation: number, bits: Uint8Array }>()

  constructor (components: ServerComponents, log: Logger, host: ServerHost) {
    this.#components = components
    this.#log = log
    this.#host = host
    this.serve = this.serve.bind(this)
  }

  /** The peer disconnected: chunks it got from us as a seed are served to others again. */
  peerGone (peer: string): void {
    this.#ledger.releasePeer(peer)
  }

  /** Ends every inbound stream (the exchange stops). */
  abortAll (err: Error): void {
    for (const stream of this.#inbound) stream.abort(err)
    this.#inbound.clear()
  }

  /** Answers the requests of one stream from `remote` (a libp2p stream, or a bulk channel). */
  serve (stream: FrameStream, remote: PeerId, bulk = false): void {
    if (!this.#host.running()) {
      stream.abort(new NotStartedError('the mesh is not running'))
      return
    }
    const peer = remote.toString()
    const log = this.#log
    this.#inbound.add(stream)
    let queued = 0
    let queuedBytes = 0
    let chain: Promise<void> = Promise.resolve()
    let remoteDone = false
    const maybeClose = (): void => {
      if (remoteDone && queued === 0 && stream.writable) stream.close().catch(noop)
    }
    // The bulk channel carries GETs of one CID and short ANNOUNCEs; a frame of another kind or size
    // ends it at its header, before its body is read (HAVE, MANIFEST and the rest stay on libp2p).
    const reader = new FrameReader(bulk ? MAX_BULK_ANNOUNCE_BODY : MAX_REQUEST_BODY, header => collect(bulk ? bulkRequest(header) : header.length, body => {
      // One way: handled at once, and nothing is queued or sent back.
      if (header.type === FRAME_ANNOUNCE) {
        this.#announced(remote, body, bulk)
        return
      }
      if (++queued > MAX_QUEUED_REQUESTS) throw new ProtocolError(`more than ${MAX_QUEUED_REQUESTS} requests queued on one stream`)
      const size = body.byteLength
      if ((queuedBytes += size) > MAX_QUEUED_BYTES) throw new ProtocolError(`more than ${MAX_QUEUED_BYTES} bytes of requests queued on one stream`)
      // Start preparing at once (the disk read overlaps the previous send) unless enough are, send
      // in order. Only a request not prepared yet keeps its body.
      const early = queued <= PREPARED_AHEAD ? this.#answer(remote, header, body, bulk) : undefined
      let later = early == null ? body : undefined
      early?.catch(noop)
      chain = chain.then(async () => {
        const out = await (early ?? this.#answer(remote, header, later as Uint8Array, bulk))
        later = undefined
        await this.#send(stream, peer, out)
      }).catch(err => {
        log('stream from %s failed - %e', peer, err)
        stream.abort(err as Error)
      }).finally(() => {
        queued--
        queuedBytes -= size
        maybeClose()
      })
    }))
    stream.listen({
      data: data => { reader.push(data) },
      remoteDone: () => {
        remoteDone = true
        maybeClose()
      },
      closed: () => { this.#inbound.delete(stream) }
    })
  }

  async #answer (remote: PeerId, header: FrameHeader, body: Uint8Array, bulk: boolean): Promise<Reply> {
    const reply = (code: number, out?: Uint8Array): Reply => ({ body: out, type: header.type, code, id: header.id })
    try {
      switch (header.type) {
        case FRAME_GET: {
          if (body.byteLength !== CID_BYTES) throw new ProtocolError('GET needs one 36-byte CID')
          const cid = cidFromBytes(body)
          if (!isChunkCid(cid)) throw new ProtocolError('GET names no chunk CID')
          if (header.code === GET_ONCE && !this.#ledger.claim(cid, remote.toString(), Date.now())) {
            this.stats.refusedOnce++
            return reply(CODE_SENT_ELSEWHERE)
          }
          let bytes: Uint8Array
          let release: (() => void) | undefined
          try {
            // On a bulk channel the socket says when it is done with the bytes, so the store's
            // buffer can be reused; a libp2p stream never says, so it gets its own copy.
            const blocks = this.#components.blocks
            if (bulk && blocks.readChunkLease != null) ({ bytes, release } = await blocks.readChunkLease(cid))
            else bytes = await blocks.readChunk(cid)
          } catch (err) {
            if (header.code === GET_ONCE) this.#ledger.release(cid)
            if ((err as Error).name === 'ChunkUnavailableError') {
              this.stats.chunksNotFound++
              return reply(CODE_NOT_FOUND)
            }
            throw err
          }
          this.stats.getsServed++
          if (bulk) this.stats.bulkGetsServed++
          this.stats.bytesServed += bytes.byteLength
          this.#components.traffic?.served?.(cid, bytes.byteLength)
          return { ...reply(CODE_OK, bytes), firstFetch: header.code === GET_ONCE ? cid : undefined, release }
        }
        case FRAME_HAVE: {
          this.stats.havesServed++
          return reply(CODE_OK, await this.#answerHave(remote, body))
        }
        case FRAME_BULK: {
          const port = this.#host.bulkPort()
          if (port == null) return reply(CODE_NOT_FOUND)
          const out = new Uint8Array(header.code === BULK_WITH_FLAGS ? 3 : 2)
          new DataView(out.buffer).setUint16(0, port)
          if (header.code === BULK_WITH_FLAGS) out[2] = BULK_TAKES_ANNOUNCE
          return reply(CODE_OK, out)
        }
        case FRAME_MANIFEST: {
          const imageId = new TextDecoder().decode(body)
          const bytes = await this.#components.getManifestBytes(imageId)
          if (bytes == null) return reply(CODE_NOT_FOUND)
          this.stats.manifestsServed++
          return reply(CODE_OK, bytes)
        }
        default:
          throw new ProtocolError(`unknown request type ${header.type}`)
      }
    } catch (err) {
      if ((err as Error).name === 'ProtocolError' || (err as Error).name === 'FrameError') throw err
      this.#log.error('answering %p failed - %e', remote, err)
      return reply(CODE_ERROR, new TextEncoder().encode((err as Error).message.slice(0, MAX_ERROR_BODY)))
    }
  }

  async #answerHave (remote: PeerId, body: Uint8Array): Promise<Uint8Array> {
    const { key, state, nearSeed, total, at } = readNoteHead(body, 'HAVE')
    if (body.byteLength < at + 4) throw new ProtocolError('HAVE body too short')
    const from = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(at)
    // n CIDs and their n bits: 36n + ceil(n/8) bytes.
    const rest = body.byteLength - at - 4
    const n = Math.floor(rest * 8 / (8 * CID_BYTES + 1))
    const bitBytes = Math.ceil(n / 8)
    if (bitBytes + n * CID_BYTES !== rest || from % 8 !== 0 || from + n > total) throw new ProtocolError('HAVE body is not a key, a bitfield and whole CIDs')
    const cidsAt = at + 4 + bitBytes
    const known = this.#components.haves?.asked(remote, key, { state, nearSeed, total, from, bits: body.subarray(at + 4, cidsAt) }) ?? { state: HAVE_NONE }
    const out = new Uint8Array(1 + bitBytes)
    out[0] = stateByte(known)
    const bits = out.subarray(1)
    if (known.bits != null && known.bits.byteLength === Math.ceil(total / 8)) {
      bits.set(known.bits.subarray(from / 8, from / 8 + bitBytes))
      if (n % 8 !== 0) bits[bitBytes - 1] &= 0xff << (8 - n % 8)
      return out
    }
    const generation = this.#components.blocks.generation
    const keptKey = `${key}/${from}/${n}`
    const kept = this.#keptHaves.get(keptKey)
    if (kept != null && generation != null && kept.generation === generation) {
      bits.set(kept.bits)
      return out
    }
    this.stats.havesFromFiles++
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < n) {
        const i = next++
        const offset = cidsAt + i * CID_BYTES
        const cid = cidFromBytes(body.subarray(offset, offset + CID_BYTES))
        if (isChunkCid(cid) && await this.#components.blocks.has(cid)) setBit(bits, i)
      }
    }
    await Promise.all(Array.from({ length: Math.min(HAVE_CONCURRENCY, n) }, worker))
    // Kept only if nothing was added or deleted while the files were checked.
    if (generation != null && this.#components.blocks.generation === generation) {
      this.#keptHaves.delete(keptKey)
      this.#keptHaves.set(keptKey, { generation, bits: bits.slice() })
      if (this.#keptHaves.size > MAX_KEPT_HAVES) this.#keptHaves.delete(this.#keptHaves.keys().next().value as string)
    }
    return out
  }

  #announced (remote: PeerId, body: Uint8Array, bulk: boolean): void {
    this.stats.announcesHeard++
    if (bulk) this.stats.bulkAnnouncesHeard++
    const { key, state, nearSeed, total, at } = readNoteHead(body, 'ANNOUNCE')
    if ((body.byteLength - at) % 4 !== 0) throw new ProtocolError('ANNOUNCE indices are not whole u32s')
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
    const indices: number[] = []
    for (let offset = at; offset < body.byteLength; offset += 4) indices.push(view.getUint32(offset))
    this.#components.haves?.announced(remote, key, { state, nearSeed, total, indices })
  }

  async #send (stream: FrameStream, peer: string, out: Reply): Promise<void> {
    if (!stream.writable) {
      out.release?.()
      return
    }
    const data = frame(out.type, out.code, out.id, out.body)
    const length = data.byteLength
    if (!stream.send(data, out.release)) await stream.onDrain()
    if (out.firstFetch != null) this.#ledger.sent(out.firstFetch, peer, Date.now())
    this.#components.traffic?.sent(peer, length)
  }
}
