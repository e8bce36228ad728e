/**
 * The chunk exchange protocol, `/peerglance/chunks/3.0.0`. This file is its facade (`ChunkExchange`:
 * requests this agent sends, verification of chunks as they arrive); the frames and bodies are in
 * framing.ts, the requesting side's streams in exchange-client.ts, the answering side in
 * exchange-server.ts.
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
 * - GET: body = the chunk's CID, 36 binary bytes (CIDv1 raw sha2-256); `code` 1 (GET_ONCE) marks a
 *   fetch from a seed, which a seed refuses (NOT_FOUND) when it sent that chunk to another
 *   downloader that is still connected within the last 15 s (seed-ledger.ts). OK body = the chunk. The
 *   requester hashes the body as it arrives and fails the request with ChunkIntegrityError
 *   unless it matches the CID; nothing unverified leaves this module.
 * - HAVE: body = u16 BE key length, the image key (UTF-8, see `imageKey`), the asker's own
 *   state byte for the image, u32 BE `total` (chunks in the image), u32 BE `from` (index of the
 *   first CID listed: long lists are split), the asker's bitfield of the listed CIDs, then the n
 *   listed CIDs of 36 bytes. OK body = one state byte (0 the server has no download of that image
 *   going, 1 it is downloading it, 2 it holds all of it) and a bitfield of n bits, most
 *   significant bit first, bit i set when the server holds CID i. Asking is also telling: a
 *   server downloading the same image learns what the asker holds and that it is downloading.
 *   In every state byte (requests, answers, ANNOUNCEs) the top bit 0x80 says the sender is a
 *   downloader connected to a seed (framing.ts, NEAR_SEED); 3.0.0 added it.
 * - ANNOUNCE: one way, never answered: body = u16 BE key length, the key, the sender's state
 *   byte, u32 BE `total`, then u32 BE indices of chunks it stored since its last ANNOUNCE. A
 *   downloader sends them to the peers it knows are downloading the same image (docs: swarm.ts).
 *   They replaced signed gossip, whose signature checks (one per copy received) were the
 *   largest single cost of the swarm (docs/benchmarks.md, issue 8).
 * - MANIFEST: body = the image id (UTF-8). OK body = the manifest bytes the server has for it; the
 *   requester checks them against the manifest CID it got from the image's metadata.
 * - BULK: empty body. OK body = u16 BE, the TCP port of the server's bulk channel (bulk-channel.ts:
 *   the same frames over TLS 1.3, on the address of the libp2p connection); NOT_FOUND when it has
 *   none. With `code` 1 (BULK_WITH_FLAGS) the answer has a third byte of flags: 1, the channel
 *   takes ANNOUNCEs (bodies up to 16 KiB) besides GETs (an agent that predates the flags answers
 *   two bytes whatever the code: GETs only). A requester asks once per peer and then sends its
 *   GETs, and ANNOUNCEs when it may, there; HAVE and MANIFEST stay on libp2p. When the bulk
 *   channel cannot be dialled or proven, they go on libp2p.
 *
 * A server writes a response with `send()` and waits for 'drain' when that returns false, so a
 * slow reader holds back the server instead of filling its memory (REPORT.md, stream API).
 */
import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'
import { CID_BYTES, ChunkIntegrityError, cidToBytes, sha256DigestOf } from '@peerglance/interface'
import type { ChunkBlocks, Lease } from '@peerglance/interface'
import type { ComponentLogger, Logger, PeerId, Startable } from '@libp2p/interface'
import type { FrameStream } from './frame-stream.ts'
import { equalBytes } from './bytes.ts'
import {
  CHUNK_PROTOCOL, DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_PIPELINE_DEPTH, DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_STREAMS_PER_PEER
} from './constants.ts'
import { NotStartedError, ProtocolError } from './errors.ts'
import {
  BULK_TAKES_ANNOUNCE, BULK_WITH_FLAGS, cidsInBinary, encodeAnnounce, encodeHaveRequest, FRAME_ANNOUNCE, FRAME_BULK, FRAME_GET, FRAME_HAVE, FRAME_MANIFEST, GET_ONCE,
  HAVE_NONE, MAX_BULK_ANNOUNCE_BODY, readStateByte, setBit
} from './framing.ts'
import type { HaveSelf, HaveState } from './framing.ts'
import { BulkListener, dialBulk } from './bulk-channel.ts'
import type { BulkAuth } from './bulk-channel.ts'
import { collector, PeerLink } from './exchange-client.ts'
import type { ChunkNetwork, ExchangeTraffic, ResultSink } from './exchange-client.ts'
import { Inbox, libp2pFrameStream, socketFrameStream } from './frame-stream.ts'
import { ExchangeServer } from './exchange-server.ts'
import { OffloadGate } from './offload-gate.ts'
import type { ExchangeStats, HaveHandler } from './exchange-server.ts'

export type { ChunkNetwork, ExchangeTraffic } from './exchange-client.ts'
export type { ExchangeStats, HaveHandler, HaveNote } from './exchange-server.ts'

/** CIDs per HAVE request; larger lists are split. */
export const MAX_HAVE_CIDS = 100_000
/** Files checked at once while answering a HAVE. */
const HAVE_CONCURRENCY = 16
/** Bodies of NOT_FOUND and ERROR responses. */
const MAX_ERROR_BODY = 4096
/** A peer whose bulk channel could not be reached or proven is not tried again for this long. */
const BULK_RETRY_MS = 60_000
/** How long a BULK request may take. */
const BULK_ASK_TIMEOUT_MS = 5_000
/**
 * The largest chunk (`chunks.chunkSize` is at most 4 MiB): a GET answer announcing more is refused
 * before a byte of it is kept, not given a 64 MiB buffer a peer never fills.
 */
const MAX_CHUNK_BYTES = 4 * 1024 * 1024
/**
 * A chunk hashed on this thread is hashed from its buffer every this many bytes, not once per
 * piece the stream delivers (a TLS record, 16 KiB: the calls cost ~7 % on top of the hashing).
 */
const HASH_STEP = 64 * 1024

/** The bulk channel could not be dialled or proven: the request goes on libp2p instead. */
class BulkUnavailableError extends Error {
  override readonly name = 'BulkUnavailableError'
}

/** What this agent knows of a peer's bulk channel (`announces`: it takes ANNOUNCEs too). */
type BulkPeer = { kind: 'asking', answered: Promise<void> } | { kind: 'none', until: number } | { kind: 'at', host: string, port: number, announces: boolean }


export interface HaveAnswer {
  state: HaveState
  /** The peer is a downloader connected to a seed. */
  nearSeed?: boolean
  /** Bit i set: the peer holds cids[i]. */
  bits: Uint8Array
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
  /**
   * The bulk channel (bulk-channel.ts): this agent's TLS identity and membership proof, and where
   * to listen (port 0: any free port). Without it chunks go on libp2p streams only.
   */
  bulk?: { auth: BulkAuth, host: string, port: number }
}

export interface ChunkExchangeInit {
  streamsPerPeer?: number
  pipelineDepth?: number
  maxInboundStreams?: number
  maxOutboundStreams?: number
  requestTimeoutMs?: number
  /**
   * Where a chunk received into a buffer that can hash itself elsewhere (`Lease.sha256`, the
   * store's receive slots) is hashed: on the store's worker while this thread is near saturated
   * (`'when-busy'`, the default: offload-gate.ts), `'always'`, or `'never'` (here, as it arrives).
   */
  hashOffThread?: 'when-busy' | 'always' | 'never'
}

export interface RequestOptions {
  signal?: AbortSignal
  timeoutMs?: number
}

export interface GetOptions extends RequestOptions {
  /** A fetch from a seed: the seed refuses it (SentElsewhereError) if it sent the chunk to another downloader lately (seed-ledger.ts). */
  once?: boolean
}


function noop (): void {}

/**
 * Both ends of the chunk exchange: the handler that answers peers from the local chunk store,
 * and the requests this agent sends (`get`, `have`, `manifest`). Verifying is part of `get`.
 */
export class ChunkExchange implements Startable {
  readonly [Symbol.toStringTag] = '@peerglance/chunk-exchange'
  readonly #components: ChunkExchangeComponents
  readonly #log: Logger
  readonly #streamsPerPeer: number
  readonly #depth: number
  readonly #maxInbound: number
  readonly #maxOutbound: number
  readonly #timeoutMs: number
  readonly #offload: (bytes: number) => boolean
  readonly #links = new Map<string, PeerLink>()
  readonly #bulkLinks = new Map<string, PeerLink>()
  readonly #bulkPeers = new Map<string, BulkPeer>()
  readonly #server: ExchangeServer
  #bulkListener: BulkListener | undefined
  #bulkPort: number | undefined
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
    const mode = init.hashOffThread ?? 'when-busy'
    const gate = mode === 'when-busy' ? new OffloadGate() : undefined
    this.#offload = gate != null ? bytes => gate.offload(bytes) : () => mode === 'always'
    // The same components object, not a copy: the swarm sets `haves` on it later (answerHavesWith).
    this.#server = new ExchangeServer(components, this.#log, { running: () => this.#running, bulkPort: () => this.#bulkPort })
  }

  /** The TCP port of this agent's bulk channel, once started (undefined: none). */
  get bulkPort (): number | undefined { return this.#bulkPort }

  /** Who answers peers' HAVE requests and hears their ANNOUNCEs (the swarm, made after the exchange). */
  answerHavesWith (haves: HaveHandler): void {
    this.#components.haves = haves
  }

  /** What the server side did, for tests and logs. */
  get stats (): ExchangeStats { return this.#server.stats }

  isStarted (): boolean { return this.#running }

  async start (): Promise<void> {
    if (this.#running) return
    const bulk = this.#components.bulk
    if (bulk != null) {
      const stats = this.#server.stats
      const listener = new BulkListener(bulk.auth, this.#log, (socket, peer) => {
        stats.bulkChannels++
        this.#server.serve(socketFrameStream(socket), peer, true)
      }, () => { stats.bulkRefused++ })
      this.#bulkPort = await listener.listen(bulk.host, bulk.port)
      this.#bulkListener = listener
    }
    await this.#components.network.handle(CHUNK_PROTOCOL, (stream, connection) => { this.#server.serve(libp2pFrameStream(stream), connection.remotePeer) }, {
      maxInboundStreams: this.#maxInbound,
      maxOutboundStreams: this.#maxOutbound
    })
    this.#running = true
  }

  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    await this.#components.network.unhandle(CHUNK_PROTOCOL).catch(noop)
    for (const link of [...this.#links.values(), ...this.#bulkLinks.values()]) link.close(new NotStartedError('the mesh is stopping'))
    this.#links.clear()
    this.#bulkLinks.clear()
    this.#bulkPeers.clear()
    this.#server.abortAll(new NotStartedError('the mesh is stopping'))
    await this.#bulkListener?.close()
    this.#bulkListener = undefined
    this.#bulkPort = undefined
  }

  /** The peer's chunk, verified against its CID, in a buffer of its own. NotHeldError when the peer does not have it. */
  async get (peer: PeerId, cid: string, opts: GetOptions = {}): Promise<Uint8Array> {
    return (await this.getLease(peer, cid, opts, freshBuffer)).bytes
  }

  /**
   * The peer's chunk, verified, received into a buffer the store lends (`ChunkBlocks.lendBuffer`),
   * which goes back with `release`: no buffer per chunk for the garbage collector, and one that
   * the store writes around the page cache.
   */
  async getLease (peer: PeerId, cid: string, opts: GetOptions = {}, lend = this.#lend): Promise<Lease> {
    // The first GET to a peer asks for its port and waits for the answer (one round trip, bounded
    // by BULK_ASK_TIMEOUT_MS), rather than carry chunks through Noise and yamux meanwhile: those
    // that did were 59 % of a downloader's socket writes. Asked on connect instead, the question
    // dialled peers the peer set had just pruned.
    const asking = this.#bulkState(peer)
    if (asking?.kind === 'asking') await asking.answered
    const bulk = this.#bulkLink(peer)
    if (bulk != null) {
      try {
        return await this.#getOn(bulk, cid, opts, lend)
      } catch (err) {
        this.#bulkFailed(peer, err as Error)
      }
    }
    return await this.#getOn(this.#link(peer), cid, opts, lend)
  }

  /** Rethrows what is not the bulk channel's own failure; otherwise the peer's frames go on libp2p for a while. */
  #bulkFailed (peer: PeerId, err: Error): void {
    if (err.name !== 'BulkUnavailableError') throw err
    this.#log('bulk channel to %p unavailable, chunks go on libp2p - %e', peer, err)
    this.#bulkPeers.set(peer.toString(), { kind: 'none', until: Date.now() + BULK_RETRY_MS })
    this.#bulkLinks.get(peer.toString())?.close(err)
    this.#bulkLinks.delete(peer.toString())
  }

  readonly #lend = (length: number): Lease => this.#components.blocks.lendBuffer?.(length) ?? freshBuffer(length)

  async #getOn (link: PeerLink, cid: string, opts: GetOptions, lend: (length: number) => Lease): Promise<Lease> {
    const expected = sha256DigestOf(cid)
    return await this.#requestOn(link, FRAME_GET, cidToBytes(cid), opts, opts.once === true ? GET_ONCE : 0, length => {
      if (length > MAX_CHUNK_BYTES) throw new ProtocolError(`peer announced ${length} bytes for chunk ${cid}, more than any chunk`)
      const body = lend(length)
      // Hashed whole at the end by the lease's worker when this thread is busy (offload-gate.ts);
      // otherwise as the body arrives, a step at a time, so verifying adds little wait at the end.
      const offThread = body.sha256 != null && this.#offload(length) ? body.sha256.bind(body) : undefined
      const hash = offThread == null ? createHash('sha256') : undefined
      let filled = 0
      let hashed = 0
      const verdict = (actual: Uint8Array): Lease => {
        if (equalBytes(actual, expected)) return body
        body.release()
        throw new ChunkIntegrityError(`peer sent bytes that do not hash to ${cid}`)
      }
      const bytes = body.bytes
      return {
        write (piece) {
          // Read into `space` already, on a dialled bulk channel: nothing to copy.
          if (piece.buffer !== bytes.buffer || piece.byteOffset !== bytes.byteOffset + filled) bytes.set(piece, filled)
          filled += piece.byteLength
          if (hash != null && (filled - hashed >= HASH_STEP || filled === length)) {
            hash.update(bytes.subarray(hashed, filled))
            hashed = filled
          }
        },
        space: () => bytes.subarray(filled, length),
        finish () {
          return offThread != null ? offThread().then(verdict) : verdict((hash as Hash).digest())
        },
        drop: body.release
      }
    })
  }

  /**
   * Which of `cids` the peer holds, and whether it is downloading the image with `key`; `mine`
   * tells it what we hold (`mine.bits` covers the whole image).
   */
  async have (peer: PeerId, key: string, cids: readonly string[], mine: HaveSelf & { bits: Uint8Array }, opts: RequestOptions = {}): Promise<HaveAnswer> {
    const bits = new Uint8Array(Math.ceil(cids.length / 8))
    let state: HaveState = HAVE_NONE
    let nearSeed = false
    const binary = cidsInBinary(cids)
    for (let from = 0; from < cids.length || from === 0; from += MAX_HAVE_CIDS) {
      const count = Math.min(MAX_HAVE_CIDS, cids.length - from)
      const body = encodeHaveRequest(key, mine, cids.length, from, binary.subarray(from * CID_BYTES, (from + count) * CID_BYTES))
      const answer = await this.#request(peer, FRAME_HAVE, body, opts, 0, collector)
      if (answer.byteLength !== 1 + Math.ceil(count / 8)) throw new ProtocolError('HAVE answer has the wrong length')
      const said = readStateByte(answer[0])
      state = Math.max(state, said.state) as HaveState
      nearSeed ||= said.nearSeed
      for (let i = 0; i < count; i++) {
        if ((answer[1 + (i >> 3)] & (0x80 >> (i & 7))) !== 0) setBit(bits, from + i)
      }
      if (cids.length === 0) break
    }
    return { state, nearSeed, bits }
  }

  /**
   * Tells a peer what we stored of image `key` since the last time (one way: nothing comes back,
   * and a failure is only logged). On the peer's bulk channel when it takes them: on libp2p each
   * one was a Noise message, a yamux frame and a window update back, 6 % of a downloader's main
   * thread for a few KiB (docs/benchmarks.md, issue 8); a TLS record is one write and one read.
   */
  async announce (peer: PeerId, key: string, note: HaveSelf & { total: number, indices: readonly number[] }, opts: RequestOptions = {}): Promise<void> {
    if (!this.#running) throw new NotStartedError('the mesh is not running')
    const body = encodeAnnounce(key, note)
    const known = this.#bulkState(peer)
    const bulk = known?.kind === 'at' && known.announces && body.byteLength <= MAX_BULK_ANNOUNCE_BODY ? this.#bulkLink(peer) : undefined
    if (bulk != null) {
      try {
        await bulk.notify(FRAME_ANNOUNCE, body, opts.signal)
        return
      } catch (err) {
        this.#bulkFailed(peer, err as Error)
      }
    }
    await this.#link(peer).notify(FRAME_ANNOUNCE, body, opts.signal)
  }

  /** The manifest bytes the peer has for an image, unverified; NotHeldError when it has none. */
  async manifest (peer: PeerId, imageId: string, opts: RequestOptions = {}): Promise<Uint8Array> {
    return await this.#request(peer, FRAME_MANIFEST, new TextEncoder().encode(imageId), opts, 0, collector)
  }

  debugState (): unknown {
    return [...this.#links.entries()].map(([k, l]) => ({ peer: k.slice(-6), ...l.debugState() }))
  }

  /** The peer disconnected (the swarm tells us): see seed-ledger.ts. */
  peerGone (peer: string): void {
    this.#server.peerGone(peer)
  }

  /** Drops the streams to a peer (it went away, or sent bad bytes). */
  forget (peer: string): void {
    for (const links of [this.#links, this.#bulkLinks]) {
      links.get(peer)?.close(new ProtocolError('peer dropped'))
      links.delete(peer)
    }
    this.#bulkPeers.delete(peer)
  }

  async #request (peer: PeerId, type: number, body: Uint8Array, opts: RequestOptions, code: number, okSink: (length: number) => ResultSink): Promise<Uint8Array> {
    return await this.#requestOn(this.#link(peer), type, body, opts, code, okSink)
  }

  async #requestOn<T> (link: PeerLink, type: number, body: Uint8Array, opts: RequestOptions, code: number, okSink: (length: number) => ResultSink<T>): Promise<T> {
    if (!this.#running) throw new NotStartedError('the mesh is not running')
    const id = this.#nextId
    this.#nextId = this.#nextId === 0xffffffff ? 1 : this.#nextId + 1
    return await link.request(id, type, body, opts.timeoutMs ?? this.#timeoutMs, opts.signal, okSink, code)
  }

  #link (peer: PeerId): PeerLink {
    const key = peer.toString()
    let link = this.#links.get(key)
    if (link == null) {
      const network = this.#components.network
      const dial = async (signal: AbortSignal | undefined): Promise<FrameStream> =>
        libp2pFrameStream(await network.dialProtocol(peer, CHUNK_PROTOCOL, { signal, maxOutboundStreams: this.#maxOutbound }))
      link = new PeerLink(peer, this.#components, this.#log, dial, this.#streamsPerPeer, this.#depth)
      this.#links.set(key, link)
    }
    return link
  }

  /**
   * The link over the peer's bulk channel, or undefined while its port is not known (the first
   * call asks for it), when it has none, or when this agent has no bulk channel itself.
   */
  #bulkLink (peer: PeerId): PeerLink | undefined {
    const auth = this.#components.bulk?.auth
    if (auth == null) return undefined
    const key = peer.toString()
    const known = this.#bulkPeers.get(key)
    if (known?.kind !== 'at') return undefined
    let link = this.#bulkLinks.get(key)
    if (link == null || link.closed) {
      const dial = async (signal: AbortSignal | undefined): Promise<FrameStream> => {
        try {
          const inbox = new Inbox()
          return socketFrameStream(await dialBulk(known.host, known.port, peer, auth, signal, inbox), inbox)
        } catch (err) {
          if (signal?.aborted === true) throw err
          throw new BulkUnavailableError(`bulk channel ${known.host}:${known.port} of ${key}: ${(err as Error).message}`, { cause: err })
        }
      }
      link = new PeerLink(peer, this.#components, this.#log, dial, this.#streamsPerPeer, this.#depth)
      this.#bulkLinks.set(key, link)
    }
    return link
  }

  /** What we know of the peer's bulk channel, asking for its port first when we know nothing (or gave up on it a while ago). */
  #bulkState (peer: PeerId): BulkPeer | undefined {
    if (this.#components.bulk == null) return undefined
    const known = this.#bulkPeers.get(peer.toString())
    if (known != null && (known.kind !== 'none' || known.until > Date.now())) return known
    this.#askBulk(peer)
    return this.#bulkPeers.get(peer.toString())
  }

  /** Learns the peer's bulk port (in the background); the host is the one of our libp2p connection to it. */
  #askBulk (peer: PeerId): void {
    const key = peer.toString()
    const { promise: answered, resolve } = Promise.withResolvers<void>()
    const state: BulkPeer = { kind: 'asking', answered }
    this.#bulkPeers.set(key, state)
    const none = (): void => { if (this.#bulkPeers.get(key) === state) this.#bulkPeers.set(key, { kind: 'none', until: Date.now() + BULK_RETRY_MS }) }
    this.#request(peer, FRAME_BULK, new Uint8Array(0), { timeoutMs: BULK_ASK_TIMEOUT_MS }, BULK_WITH_FLAGS, collector).then(answer => {
      const host = this.#components.network.remoteHost?.(peer)
      // Two bytes from an agent that predates the flags: GETs only.
      if ((answer.byteLength !== 2 && answer.byteLength !== 3) || host == null) {
        none()
        return
      }
      const port = new DataView(answer.buffer, answer.byteOffset, 2).getUint16(0)
      const announces = answer.byteLength === 3 && (answer[2] & BULK_TAKES_ANNOUNCE) !== 0
      if (this.#bulkPeers.get(key) === state) this.#bulkPeers.set(key, { kind: 'at', host, port, announces })
    }, err => {
      this.#log('peer %p has no bulk channel - %e', peer, err)
      none()
    }).finally(resolve)
  }

}

/** The key a download session, its HAVE requests and its ANNOUNCEs go by: sha256 over the CID list. */
export function imageKey (cids: readonly string[]): string {
  const hash = createHash('sha256')
  for (const cid of cids) hash.update(cid).update('\n')
  return hash.digest('base64url').slice(0, 22)
}

function freshBuffer (length: number): Lease {
  return { bytes: Buffer.allocUnsafe(length), release: noop }
}

function positive (value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer, not ${value}`)
  return value
}

