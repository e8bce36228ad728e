/**
 * The chunk exchange protocol, `/peerglance/chunks/1.0.0`.
 *
 * A requester keeps a few long-lived streams per peer (`streamsPerPeer`, 4 by default) and sends
 * requests on them; opening a stream per chunk cost ~1.2 ms of CPU each and 40 % of the rate at
 * 1 MiB (p2p-perf REPORT.md section 3). Both directions carry frames:
 *
 *     offset 0     1     2           6           10
 *            +-----+-----+-----------+-----------+------------------+
 *            |type |code | id u32 BE | len u32 BE| body (len bytes) |
 *            +-----+-----+-----------+-----------+------------------+
 *
 * - `type` is 1 GET, 2 HAVE, 3 MANIFEST or 4 ANNOUNCE; a response has the type of its request.
 * - `code` is 0 in requests; in responses 0 OK, 1 NOT_FOUND, 2 ERROR (body: a UTF-8 message).
 * - `id` is chosen by the requester and echoed in the response. The server answers the requests
 *   of one stream in the order they came, so a requester may pipeline (`pipelineDepth`, 2 by
 *   default: the server reads the next chunk from disk while it sends the current one).
 * - Request bodies are at most 4 MiB, response bodies at most 64 MiB; more ends the stream.
 *
 * Requests and OK responses:
 * - GET: body = the chunk's CID, 36 binary bytes (CIDv1 raw sha2-256). OK body = the chunk. The
 *   requester hashes the body as it arrives and fails the request with ChunkIntegrityError
 *   unless it matches the CID; nothing unverified leaves this module.
 * - HAVE: body = u16 BE key length, the image key (UTF-8, see `imageKey`), the asker's own
 *   state byte for the image, u32 BE `total` (chunks in the image), u32 BE `from` (index of the
 *   first CID listed: long lists are split), the asker's bitfield of the listed CIDs, then the n
 *   listed CIDs of 36 bytes. OK body = one state byte (0 the server has no download of that image
 *   going, 1 it is downloading it, 2 it holds all of it) and a bitfield of n bits, most
 *   significant bit first, bit i set when the server holds CID i. Asking is also telling: a
 *   server downloading the same image learns what the asker holds and that it is downloading.
 * - ANNOUNCE: one way, never answered: body = u16 BE key length, the key, the sender's state
 *   byte, u32 BE `total`, then u32 BE indices of chunks it stored since its last ANNOUNCE. A
 *   downloader sends them to the peers it knows are downloading the same image (docs: swarm.ts).
 *   They replaced signed gossip, whose signature checks (one per copy received) were the
 *   largest single cost of the swarm (docs/benchmarks.md, issue 8).
 * - MANIFEST: body = the image id (UTF-8). OK body = the manifest bytes the server has for it; the
 *   requester checks them against the manifest CID it got from the image's metadata.
 *
 * A server writes a response with `send()` and waits for 'drain' when that returns false, so a
 * slow reader holds back the server instead of filling its memory (REPORT.md, stream API).
 */
import { createHash } from 'node:crypto'
import { AbortedError, ChunkIntegrityError } from '@peerglance/interface'
import type { ChunkBlocks } from '@peerglance/interface'
import type { ComponentLogger, Connection, Logger, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { CID_BYTES, cidFromBytes, cidToBytes, equalBytes, isChunkCid, sha256DigestOf } from './cid.ts'
import {
  CHUNK_PROTOCOL, DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_PIPELINE_DEPTH, DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_STREAMS_PER_PEER, MAX_FRAME_BODY, MAX_QUEUED_REQUESTS
} from './constants.ts'
import { NotHeldError, NotStartedError, ProtocolError, RequestTimeoutError } from './errors.ts'
import {
  CODE_ERROR, CODE_NOT_FOUND, CODE_OK, collect, discard, FRAME_ANNOUNCE, FRAME_GET, FRAME_HAVE, FRAME_MANIFEST, frame, FrameReader, HAVE_COMPLETE,
  HAVE_DOWNLOADING, HAVE_NONE, HEADER_SIZE, setBit
} from './framing.ts'
import type { BodySink, FrameHeader, HaveState } from './framing.ts'

/** Request bodies: a HAVE for 100k chunks (100 GiB at 1 MiB) is 3.6 MB. */
const MAX_REQUEST_BODY = 4 * 1024 * 1024
/** CIDs per HAVE request; larger lists are split. */
export const MAX_HAVE_CIDS = 100_000
/** Files checked at once while answering a HAVE. */
const HAVE_CONCURRENCY = 16
/** Bodies of NOT_FOUND and ERROR responses. */
const MAX_ERROR_BODY = 4096


export interface HaveAnswer {
  state: HaveState
  /** Bit i set: the peer holds cids[i]. */
  bits: Uint8Array
}

/** What a peer said of its holdings of one image: in a HAVE request, or in an ANNOUNCE. */
export interface HaveNote {
  state: HaveState
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
  asked: (peer: PeerId, key: string, note: HaveNote) => { state: HaveState, bits?: Uint8Array }
  announced: (peer: PeerId, key: string, note: HaveNote) => void
}

/** The slice of libp2p the exchange uses. */
export interface ChunkNetwork {
  handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId, protocols: string | string[], options?: { signal?: AbortSignal, maxOutboundStreams?: number }) => Promise<Stream>
}

export interface ExchangeTraffic {
  /** Bytes of chunk protocol frames this agent sent to / received from a peer. */
  sent: (peer: string, bytes: number) => void
  received: (peer: string, bytes: number) => void
}

export interface ChunkExchangeComponents {
  network: ChunkNetwork
  /** What the server side reads chunks from. */
  blocks: ChunkBlocks
  /** The manifest bytes this agent has for an image, for MANIFEST requests. */
  getManifestBytes: (imageId: string) => Promise<Uint8Array | undefined>
  /** Who holds what: answers HAVE requests and hears ANNOUNCEs (the swarm). */
  haves?: HaveHandler
  traffic?: ExchangeTraffic
  logger: ComponentLogger
}

export interface ChunkExchangeInit {
  streamsPerPeer?: number
  pipelineDepth?: number
  maxInboundStreams?: number
  maxOutboundStreams?: number
  requestTimeoutMs?: number
}

export interface RequestOptions {
  signal?: AbortSignal
  timeoutMs?: number
}

/** What the server side did, for tests and logs. */
export interface ExchangeStats {
  getsServed: number
  chunksNotFound: number
  bytesServed: number
  havesServed: number
  manifestsServed: number
}

/** Collects an OK body; `finish` returns it, or throws when it is not acceptable (a bad hash). */
interface ResultSink {
  write: (piece: Uint8Array) => void
  finish: () => Uint8Array
}

function collector (length: number): ResultSink {
  let body: Uint8Array | undefined
  const sink = collect(length, collected => { body = collected })
  return {
    write (piece) { sink.write(piece) },
    finish () {
      sink.end()
      return body as Uint8Array
    }
  }
}

interface Pending {
  id: number
  type: number
  /** Returns the sink for an OK body; other bodies are collected as an error message. */
  sink: (header: FrameHeader) => BodySink
  reject: (err: Error) => void
  /** Set once the caller stopped waiting: the response is still read, and thrown away. */
  abandoned: boolean
  timer?: NodeJS.Timeout
}

interface Reply {
  type: number
  code: number
  id: number
  body?: Uint8Array
}

/** One long-lived outbound stream and the requests waiting on it, oldest first. */
class Channel {
  readonly stream: Stream
  readonly pending: Pending[] = []
  /**
   * The request whose response body is arriving now. The reader takes a request off `pending`
   * when its header comes, so without this a stream that dies mid-body would leave that request
   * to its timeout (15 s) instead of failing it at once.
   */
  receiving: Pending | undefined
  closed = false

  constructor (stream: Stream) {
    this.stream = stream
  }
}

function noop (): void {}

/**
 * Both ends of the chunk exchange: the handler that answers peers from the local chunk store,
 * and the requests this agent sends (`get`, `have`, `manifest`). Verifying is part of `get`.
 */
export class ChunkExchange implements Startable {
  readonly [Symbol.toStringTag] = '@peerglance/chunk-exchange'
  readonly stats: ExchangeStats = { getsServed: 0, chunksNotFound: 0, bytesServed: 0, havesServed: 0, manifestsServed: 0 }
  readonly #components: ChunkExchangeComponents
  readonly #log: Logger
  readonly #streamsPerPeer: number
  readonly #depth: number
  readonly #maxInbound: number
  readonly #maxOutbound: number
  readonly #timeoutMs: number
  readonly #links = new Map<string, PeerLink>()
  readonly #inbound = new Set<Stream>()
  #running = false
  #nextId = 1

  constructor (components: ChunkExchangeComponents, init: ChunkExchangeInit = {}) {
    this.#components = components
    this.#log = components.logger.forComponent('peerglance:chunk-exchange')
    this.#streamsPerPeer = positive(init.streamsPerPeer ?? DEFAULT_STREAMS_PER_PEER, 'streamsPerPeer')
    this.#depth = positive(init.pipelineDepth ?? DEFAULT_PIPELINE_DEPTH, 'pipelineDepth')
    this.#maxInbound = init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS
    this.#maxOutbound = init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS
    this.#timeoutMs = init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    this.serve = this.serve.bind(this)
  }

  isStarted (): boolean { return this.#running }

  async start (): Promise<void> {
    if (this.#running) return
    await this.#components.network.handle(CHUNK_PROTOCOL, this.serve, {
      maxInboundStreams: this.#maxInbound,
      maxOutboundStreams: this.#maxOutbound
    })
    this.#running = true
  }

  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    await this.#components.network.unhandle(CHUNK_PROTOCOL).catch(noop)
    for (const link of this.#links.values()) link.close(new NotStartedError('the mesh is stopping'))
    this.#links.clear()
    for (const stream of this.#inbound) stream.abort(new NotStartedError('the mesh is stopping'))
    this.#inbound.clear()
  }

  /** The peer's chunk, verified against its CID. NotHeldError when the peer does not have it. */
  async get (peer: PeerId, cid: string, opts: RequestOptions = {}): Promise<Uint8Array> {
    const expected = sha256DigestOf(cid)
    return await this.#request(peer, FRAME_GET, cidToBytes(cid), opts, length => {
      const hash = createHash('sha256')
      const body = collector(length)
      // Hash each piece as it arrives, so verifying adds no wait at the end of a chunk.
      return {
        write (piece) {
          hash.update(piece)
          body.write(piece)
        },
        finish () {
          if (!equalBytes(hash.digest(), expected)) throw new ChunkIntegrityError(`peer sent bytes that do not hash to ${cid}`)
          return body.finish()
        }
      }
    })
  }

  /**
   * Which of `cids` the peer holds, and whether it is downloading the image with `key`; `mine`
   * tells it what we hold (`mine.bits` covers the whole image).
   */
  async have (peer: PeerId, key: string, cids: readonly string[], mine: { state: HaveState, bits: Uint8Array }, opts: RequestOptions = {}): Promise<HaveAnswer> {
    const bits = new Uint8Array(Math.ceil(cids.length / 8))
    let state: HaveState = HAVE_NONE
    const keyBytes = new TextEncoder().encode(key)
    for (let from = 0; from < cids.length || from === 0; from += MAX_HAVE_CIDS) {
      const part = cids.slice(from, from + MAX_HAVE_CIDS)
      const bitBytes = Math.ceil(part.length / 8)
      const head = 2 + keyBytes.byteLength + 9
      const body = new Uint8Array(head + bitBytes + part.length * CID_BYTES)
      const view = new DataView(body.buffer)
      view.setUint16(0, keyBytes.byteLength)
      body.set(keyBytes, 2)
      body[2 + keyBytes.byteLength] = mine.state
      view.setUint32(2 + keyBytes.byteLength + 1, cids.length)
      view.setUint32(2 + keyBytes.byteLength + 5, from)
      body.set(mine.bits.subarray(from / 8, from / 8 + bitBytes), head)
      // The last byte may carry bits of the next part: they are not this part's.
      if (part.length % 8 !== 0) body[head + bitBytes - 1] &= 0xff << (8 - part.length % 8)
      part.forEach((cid, i) => { body.set(cidToBytes(cid), head + bitBytes + i * CID_BYTES) })
      const answer = await this.#request(peer, FRAME_HAVE, body, opts, collector)
      if (answer.byteLength !== 1 + Math.ceil(part.length / 8)) throw new ProtocolError('HAVE answer has the wrong length')
      state = Math.max(state, answer[0] <= HAVE_COMPLETE ? answer[0] : HAVE_NONE) as HaveState
      for (let i = 0; i < part.length; i++) {
        if ((answer[1 + (i >> 3)] & (0x80 >> (i & 7))) !== 0) setBit(bits, from + i)
      }
      if (cids.length === 0) break
    }
    return { state, bits }
  }

  /**
   * Tells a peer what we stored of image `key` since the last time (one way: nothing comes back,
   * and a failure is only logged).
   */
  async announce (peer: PeerId, key: string, note: { state: HaveState, total: number, indices: readonly number[] }, opts: RequestOptions = {}): Promise<void> {
    if (!this.#running) throw new NotStartedError('the mesh is not running')
    const keyBytes = new TextEncoder().encode(key)
    const head = 2 + keyBytes.byteLength + 5
    const body = new Uint8Array(head + 4 * note.indices.length)
    const view = new DataView(body.buffer)
    view.setUint16(0, keyBytes.byteLength)
    body.set(keyBytes, 2)
    body[2 + keyBytes.byteLength] = note.state
    view.setUint32(2 + keyBytes.byteLength + 1, note.total)
    note.indices.forEach((index, i) => { view.setUint32(head + 4 * i, index) })
    await this.#link(peer).notify(FRAME_ANNOUNCE, body, opts.signal)
  }

  /** The manifest bytes the peer has for an image, unverified; NotHeldError when it has none. */
  async manifest (peer: PeerId, imageId: string, opts: RequestOptions = {}): Promise<Uint8Array> {
    return await this.#request(peer, FRAME_MANIFEST, new TextEncoder().encode(imageId), opts, collector)
  }

  debugState (): unknown {
    return [...this.#links.entries()].map(([k, l]) => ({ peer: k.slice(-6), ...l.debugState() }))
  }

  /** Drops the streams to a peer (it went away, or sent bad bytes). */
  forget (peer: string): void {
    this.#links.get(peer)?.close(new ProtocolError('peer dropped'))
    this.#links.delete(peer)
  }

  async #request (peer: PeerId, type: number, body: Uint8Array, opts: RequestOptions, okSink: (length: number) => ResultSink): Promise<Uint8Array> {
    if (!this.#running) throw new NotStartedError('the mesh is not running')
    const id = this.#nextId
    this.#nextId = this.#nextId === 0xffffffff ? 1 : this.#nextId + 1
    return await this.#link(peer).request(id, type, body, opts.timeoutMs ?? this.#timeoutMs, opts.signal, okSink)
  }

  #link (peer: PeerId): PeerLink {
    const key = peer.toString()
    let link = this.#links.get(key)
    if (link == null) {
      link = new PeerLink(peer, this.#components, this.#log, this.#streamsPerPeer, this.#depth, this.#maxOutbound)
      this.#links.set(key, link)
    }
    return link
  }

  // ---------------------------------------------------------------------------------------------
  // Server side

  private serve (stream: Stream, connection: Connection): void {
    if (!this.#running) {
      stream.abort(new NotStartedError('the mesh is not running'))
      return
    }
    const remote = connection.remotePeer
    const peer = remote.toString()
    const log = this.#log
    this.#inbound.add(stream)
    let queued = 0
    let chain: Promise<void> = Promise.resolve()
    let remoteDone = false
    const maybeClose = (): void => {
      if (remoteDone && queued === 0 && stream.writeStatus === 'writable') stream.close().catch(noop)
    }
    const reader = new FrameReader(MAX_REQUEST_BODY, header => collect(header.length, body => {
      // One way: handled at once, and nothing is queued or sent back.
      if (header.type === FRAME_ANNOUNCE) {
        this.#announced(remote, body)
        return
      }
      if (++queued > MAX_QUEUED_REQUESTS) throw new ProtocolError(`more than ${MAX_QUEUED_REQUESTS} requests queued on one stream`)
      // Start preparing at once (the disk read overlaps the previous send), send in order.
      const response = this.#answer(remote, header, body)
      response.catch(noop)
      chain = chain.then(async () => {
        const out = await response
        await this.#send(stream, peer, out)
      }).catch(err => {
        log('stream from %s failed - %e', peer, err)
        stream.abort(err as Error)
      }).finally(() => {
        queued--
        maybeClose()
      })
    }))
    stream.addEventListener('message', evt => {
      try {
        reader.push(evt.data)
      } catch (err) {
        stream.abort(err as Error)
      }
    })
    stream.addEventListener('remoteCloseWrite', () => {
      remoteDone = true
      maybeClose()
    })
    stream.addEventListener('close', () => { this.#inbound.delete(stream) })
  }

  async #answer (remote: PeerId, header: FrameHeader, body: Uint8Array): Promise<Reply> {
    const reply = (code: number, out?: Uint8Array): Reply => ({ body: out, type: header.type, code, id: header.id })
    try {
      switch (header.type) {
        case FRAME_GET: {
          if (body.byteLength !== CID_BYTES) throw new ProtocolError('GET needs one 36-byte CID')
          const cid = cidFromBytes(body)
          if (!isChunkCid(cid)) throw new ProtocolError('GET names no chunk CID')
          let bytes: Uint8Array
          try {
            bytes = await this.#components.blocks.readChunk(cid)
          } catch (err) {
            if ((err as Error).name === 'ChunkUnavailableError') {
              this.stats.chunksNotFound++
              return reply(CODE_NOT_FOUND)
            }
            throw err
          }
          this.stats.getsServed++
          this.stats.bytesServed += bytes.byteLength
          return reply(CODE_OK, bytes)
        }
        case FRAME_HAVE: {
          this.stats.havesServed++
          return reply(CODE_OK, await this.#answerHave(remote, body))
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
      if ((err as Error).name === 'ProtocolError') throw err
      this.#log.error('answering %p failed - %e', remote, err)
      return reply(CODE_ERROR, new TextEncoder().encode((err as Error).message.slice(0, MAX_ERROR_BODY)))
    }
  }

  async #answerHave (remote: PeerId, body: Uint8Array): Promise<Uint8Array> {
    const { key, state, total, at } = readNoteHead(body, 'HAVE')
    if (body.byteLength < at + 4) throw new ProtocolError('HAVE body too short')
    const from = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(at)
    // n CIDs and their n bits: 36n + ceil(n/8) bytes.
    const rest = body.byteLength - at - 4
    const n = Math.floor(rest * 8 / (8 * CID_BYTES + 1))
    const bitBytes = Math.ceil(n / 8)
    if (bitBytes + n * CID_BYTES !== rest || from % 8 !== 0 || from + n > total) throw new ProtocolError('HAVE body is not a key, a bitfield and whole CIDs')
    const cidsAt = at + 4 + bitBytes
    const known = this.#components.haves?.asked(remote, key, { state, total, from, bits: body.subarray(at + 4, cidsAt) }) ?? { state: HAVE_NONE }
    const out = new Uint8Array(1 + bitBytes)
    out[0] = known.state
    const bits = out.subarray(1)
    if (known.bits != null && known.bits.byteLength === Math.ceil(total / 8)) {
      bits.set(known.bits.subarray(from / 8, from / 8 + bitBytes))
      if (n % 8 !== 0) bits[bitBytes - 1] &= 0xff << (8 - n % 8)
      return out
    }
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
    return out
  }

  #announced (remote: PeerId, body: Uint8Array): void {
    const { key, state, total, at } = readNoteHead(body, 'ANNOUNCE')
    if ((body.byteLength - at) % 4 !== 0) throw new ProtocolError('ANNOUNCE indices are not whole u32s')
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
    const indices: number[] = []
    for (let offset = at; offset < body.byteLength; offset += 4) indices.push(view.getUint32(offset))
    this.#components.haves?.announced(remote, key, { state, total, indices })
  }

  async #send (stream: Stream, peer: string, out: Reply): Promise<void> {
    if (stream.writeStatus !== 'writable') return
    const data = frame(out.type, out.code, out.id, out.body)
    const length = data.byteLength
    if (!stream.send(data)) await stream.onDrain()
    this.#components.traffic?.sent(peer, length)
  }
}

/** The outbound streams to one peer. */
class PeerLink {
  readonly #peer: PeerId
  readonly #key: string
  readonly #components: ChunkExchangeComponents
  readonly #log: Logger
  readonly #max: number
  readonly #depth: number
  readonly #maxOutbound: number
  readonly #channels: Channel[] = []
  #opening = 0
  readonly #waiters: Array<() => void> = []
  #closed: Error | undefined

  constructor (peer: PeerId, components: ChunkExchangeComponents, log: Logger, max: number, depth: number, maxOutbound: number) {
    this.#peer = peer
    this.#key = peer.toString()
    this.#components = components
    this.#log = log
    this.#max = max
    this.#depth = depth
    this.#maxOutbound = maxOutbound
  }

  debugState (): Record<string, unknown> {
    return { opening: this.#opening, waiters: this.#waiters.length, channels: this.#channels.map(c => ({ pending: c.pending.length, status: c.stream.status, write: c.stream.writeStatus, needsDrain: c.stream.writableNeedsDrain })) }
  }

  close (err: Error): void {
    this.#closed = err
    for (const channel of this.#channels.splice(0)) channel.stream.abort(err)
    for (const wake of this.#waiters.splice(0)) wake()
  }

  async request (id: number, type: number, body: Uint8Array, timeoutMs: number, signal: AbortSignal | undefined, okSink: (length: number) => ResultSink): Promise<Uint8Array> {
    const channel = await this.#acquire(signal)
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>()
    // The stream may close (rejecting this) while we still wait to send, and then nobody awaits
    // it: an unhandled rejection would end the whole agent.
    promise.catch(() => {})
    const pending: Pending = {
      id,
      type,
      abandoned: false,
      reject,
      sink: header => {
        if (header.code === CODE_OK) {
          const inner = okSink(header.length)
          return {
            write (piece) { inner.write(piece) },
            end () {
              try {
                resolve(inner.finish())
              } catch (err) {
                reject(err as Error)
              }
            }
          }
        }
        if (header.length > MAX_ERROR_BODY) throw new ProtocolError('error response too long')
        return collect(header.length, message => {
          const text = new TextDecoder().decode(message)
          if (header.code === CODE_NOT_FOUND) reject(new NotHeldError(`peer ${this.#key} does not hold it`))
          else reject(new ProtocolError(`peer ${this.#key} failed the request: ${text}`))
        })
      }
    }
    pending.timer = setTimeout(() => {
      reject(new RequestTimeoutError(`peer ${this.#key} did not answer within ${timeoutMs} ms`))
      // Responses come in order; a peer that stalls on one stalls the stream.
      channel.stream.abort(new RequestTimeoutError('request timed out'))
    }, timeoutMs)
    const onAbort = (): void => {
      pending.abandoned = true
      reject(new AbortedError('the chunk request was aborted', { cause: signal?.reason }))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    channel.pending.push(pending)
    try {
      const data = frame(type, 0, id, body)
      const length = data.byteLength
      if (!channel.stream.send(data)) await channel.stream.onDrain({ signal })
      this.#components.traffic?.sent(this.#key, length)
      return await promise
    } finally {
      clearTimeout(pending.timer)
      signal?.removeEventListener('abort', onAbort)
      pending.abandoned = true
      this.#wake()
    }
  }

  /** Sends a one-way frame on the least busy stream (opening one if there is none). */
  async notify (type: number, body: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    if (this.#closed != null) throw this.#closed
    let channel: Channel | undefined
    for (const c of this.#channels) if (!c.closed && (channel == null || c.pending.length < channel.pending.length)) channel = c
    channel ??= await this.#open(signal)
    const data = frame(type, 0, 0, body)
    if (!channel.stream.send(data)) await channel.stream.onDrain({ signal })
    this.#components.traffic?.sent(this.#key, data.byteLength)
  }

  /** Lets every waiting request look again: a slot freed, a stream closed, or a dial failed. */
  #wake (): void {
    for (const wake of this.#waiters.splice(0)) wake()
  }

  /** A stream with room for one more request: an idle one, a new one, or the least busy. */
  async #acquire (signal: AbortSignal | undefined): Promise<Channel> {
    while (true) {
      if (this.#closed != null) throw this.#closed
      if (signal?.aborted === true) throw new AbortedError('the chunk request was aborted', { cause: signal.reason })
      let best: Channel | undefined
      for (const channel of this.#channels) {
        if (!channel.closed && (best == null || channel.pending.length < best.pending.length)) best = channel
      }
      if (best != null && best.pending.length === 0) return best
      if (this.#channels.length + this.#opening < this.#max) return await this.#open(signal)
      if (best != null && best.pending.length < this.#depth) return best
      const { promise, resolve } = Promise.withResolvers<void>()
      this.#waiters.push(resolve)
      const onAbort = (): void => { resolve() }
      signal?.addEventListener('abort', onAbort, { once: true })
      await promise
      signal?.removeEventListener('abort', onAbort)
    }
  }

  async #open (signal: AbortSignal | undefined): Promise<Channel> {
    this.#opening++
    let stream: Stream
    try {
      stream = await this.#components.network.dialProtocol(this.#peer, CHUNK_PROTOCOL, { signal, maxOutboundStreams: this.#maxOutbound })
    } catch (err) {
      this.#opening--
      this.#wake()
      throw err
    }
    this.#opening--
    const channel = new Channel(stream)
    if (this.#closed != null) {
      stream.abort(this.#closed)
      throw this.#closed
    }
    this.#channels.push(channel)
    const traffic = this.#components.traffic
    const key = this.#key
    const reader = new FrameReader(MAX_FRAME_BODY, header => {
      const pending = channel.pending.shift()
      if (pending == null || pending.id !== header.id || pending.type !== header.type) {
        throw new ProtocolError(`unexpected response ${header.id} from ${key}`)
      }
      // Set before the traffic hook runs: a close it causes must find the request.
      channel.receiving = header.length > 0 && !pending.abandoned ? pending : undefined
      traffic?.received(key, HEADER_SIZE + header.length)
      this.#wake()
      if (pending.abandoned) return discard
      const sink = pending.sink(header)
      if (header.length === 0) return sink
      return {
        write (piece) { sink.write(piece) },
        end () {
          channel.receiving = undefined
          sink.end()
        }
      }
    })
    stream.addEventListener('message', evt => {
      try {
        reader.push(evt.data)
      } catch (err) {
        stream.abort(err as Error)
      }
    })
    stream.addEventListener('close', evt => {
      channel.closed = true
      const index = this.#channels.indexOf(channel)
      if (index >= 0) this.#channels.splice(index, 1)
      const err = evt.error ?? new ProtocolError(`stream to ${key} closed`)
      // Not an AbortedError nor NotHeldError, so the swarm counts it against this peer and asks another holder at once.
      channel.receiving?.reject(new ProtocolError(`stream to ${key} closed while a response was arriving`, { cause: err }))
      channel.receiving = undefined
      for (const pending of channel.pending.splice(0)) pending.reject(err)
      this.#wake()
    })
    this.#log.trace('opened chunk stream to %s', key)
    return channel
  }
}

/** The head of HAVE and ANNOUNCE bodies: key, state, total; `at` is where the rest begins. */
function readNoteHead (body: Uint8Array, what: string): { key: string, state: HaveState, total: number, at: number } {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  if (body.byteLength < 2) throw new ProtocolError(`${what} body too short`)
  const keyLength = view.getUint16(0)
  const at = 2 + keyLength + 5
  if (body.byteLength < at) throw new ProtocolError(`${what} body too short`)
  const key = new TextDecoder().decode(body.subarray(2, 2 + keyLength))
  const byte = body[2 + keyLength]
  const state: HaveState = byte === HAVE_DOWNLOADING || byte === HAVE_COMPLETE ? byte : HAVE_NONE
  return { key, state, total: view.getUint32(2 + keyLength + 1), at }
}

/** The key a download session, its HAVE requests and its ANNOUNCEs go by: sha256 over the CID list. */
export function imageKey (cids: readonly string[]): string {
  const hash = createHash('sha256')
  for (const cid of cids) hash.update(cid).update('\n')
  return hash.digest('base64url').slice(0, 22)
}

function positive (value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer, not ${value}`)
  return value
}
