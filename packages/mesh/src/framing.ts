import { CID_BYTES, cidToBytes } from '@peerglance/interface'
import { Uint8ArrayList } from 'uint8arraylist'

/** Bytes before every frame's body: type (u8), code (u8), request id (u32 BE), body length (u32 BE). */
export const HEADER_SIZE = 10

export const FRAME_GET = 1
export const FRAME_HAVE = 2
export const FRAME_MANIFEST = 3
/** One way: no response follows (chunk-exchange.ts). */
export const FRAME_ANNOUNCE = 4
/** Asks for the port of the peer's bulk channel (bulk-channel.ts). */
export const FRAME_BULK = 5

/** The state byte of HAVE answers and ANNOUNCEs: what the sender does with an image. */
export const HAVE_NONE = 0
export const HAVE_DOWNLOADING = 1
export const HAVE_COMPLETE = 2
export type HaveState = typeof HAVE_NONE | typeof HAVE_DOWNLOADING | typeof HAVE_COMPLETE
/**
 * Set in the state byte by a downloader connected to a seed of the image (a peer that holds
 * chunks and is not downloading it): only such downloaders share out first fetches from seeds
 * (scheduling.ts, `downloadersOf`). With bounded peer sets most downloaders reach no seed; when
 * they took a share too, the chunks they "owned" came from no seed at all (simulate.ts found it).
 */
export const NEAR_SEED = 0x80

/** What a sender says of itself with each HAVE request, HAVE answer and ANNOUNCE. */
export interface HaveSelf {
  state: HaveState
  nearSeed?: boolean
}

export function stateByte (self: HaveSelf): number {
  return self.state | (self.nearSeed === true ? NEAR_SEED : 0)
}

export function readStateByte (byte: number): { state: HaveState, nearSeed: boolean } {
  const low = byte & ~NEAR_SEED
  const state: HaveState = low === HAVE_DOWNLOADING || low === HAVE_COMPLETE ? low : HAVE_NONE
  return { state, nearSeed: (byte & NEAR_SEED) !== 0 }
}

/** Bodies of NOT_FOUND and ERROR responses are at most this long. */
export const MAX_ERROR_BODY = 4096

/**
 * The code byte of a GET request: a downloader's fetch from a seed, which the seed serves only if
 * no other connected downloader got that chunk so lately (seed-ledger.ts). 0: serve it in any case.
 */
export const GET_ONCE = 1

/**
 * The code byte of a BULK request: the asker reads a third byte in the answer, the channel's
 * flags (an agent that predates them answers two bytes, the port, whatever the code).
 */
export const BULK_WITH_FLAGS = 1
/** Flag of a BULK answer: ANNOUNCEs may come on the bulk channel too. */
export const BULK_TAKES_ANNOUNCE = 1
/**
 * The longest ANNOUNCE body the bulk channel takes (4,096 indices since the last one, ~600 ms of
 * 1 MiB chunks at 50 Gbit/s); a longer one goes on libp2p.
 */
export const MAX_BULK_ANNOUNCE_BODY = 16 * 1024

export const CODE_OK = 0
export const CODE_NOT_FOUND = 1
export const CODE_ERROR = 2
/**
 * A seed's answer to a GET_ONCE for a chunk it sent another downloader lately: it holds the chunk,
 * get it from the mesh. (NOT_FOUND before, which made the asker forget that the seed holds it: a
 * reader could then find no holder and fail. An agent older than this code takes it as an error.)
 */
export const CODE_SENT_ELSEWHERE = 3

export interface FrameHeader {
  type: number
  code: number
  id: number
  length: number
}

export function encodeHeader (type: number, code: number, id: number, length: number): Uint8Array {
  const header = new Uint8Array(HEADER_SIZE)
  const view = new DataView(header.buffer)
  header[0] = type
  header[1] = code
  view.setUint32(2, id)
  view.setUint32(6, length)
  return header
}

/** Header and body as one send, without copying the body. */
export function frame (type: number, code: number, id: number, body?: Uint8Array): Uint8ArrayList {
  const list = new Uint8ArrayList(encodeHeader(type, code, id, body?.byteLength ?? 0))
  if (body != null && body.byteLength > 0) list.append(body)
  return list
}

/**
 * Where the bytes of one frame's body go. The default collects them into one buffer of the
 * body's size, copying each piece once as it arrives; a frame with a large body (a chunk) never
 * sits in the stream's read buffer, and never gets flattened twice.
 */
export interface BodySink {
  write: (piece: Uint8Array) => void
  /** Called with the whole body once its last byte arrived. */
  end: () => void
  /**
   * The body's part not filled yet, where the stream may read the next bytes itself (a socket
   * reading into buffers it is given, frame-stream.ts's Inbox); `write` then gets a view of
   * bytes already in place, and copies nothing. Undefined: the bytes are read elsewhere, and copied.
   */
  space?: () => Uint8Array | undefined
}

export class FrameError extends Error {
  static readonly errorName = 'FrameError'
  override readonly name = 'FrameError'
}

/**
 * Incremental frame parser for a stream's 'message' events: feed it each Uint8Array or
 * Uint8ArrayList as it comes, and it calls `onHeader` once per frame, which returns the sink for
 * that frame's body.
 */
export class FrameReader {
  readonly #maxBody: number
  readonly #onHeader: (header: FrameHeader) => BodySink
  readonly #header = new Uint8Array(HEADER_SIZE)
  #headerFilled = 0
  #sink: BodySink | undefined
  #remaining = 0

  constructor (maxBody: number, onHeader: (header: FrameHeader) => BodySink) {
    this.#maxBody = maxBody
    this.#onHeader = onHeader
  }

  push (data: Uint8Array | Uint8ArrayList): void {
    if (data instanceof Uint8Array) this.#pushBuffer(data)
    else for (const buf of data) this.#pushBuffer(buf)
  }

  /**
   * Where the next bytes may go without a copy: the rest of the body being read, when its sink
   * offers it, and never more than that body (the next frame's header must not land in it).
   */
  space (): Uint8Array | undefined {
    if (this.#sink?.space == null || this.#remaining === 0) return undefined
    const space = this.#sink.space()
    if (space == null || space.byteLength === 0) return undefined
    return space.byteLength > this.#remaining ? space.subarray(0, this.#remaining) : space
  }

  /** True when no frame is partly read. */
  get idle (): boolean {
    return this.#headerFilled === 0 && this.#sink == null
  }

  #pushBuffer (buf: Uint8Array): void {
    let offset = 0
    while (offset < buf.byteLength) {
      if (this.#sink == null) {
        const n = Math.min(HEADER_SIZE - this.#headerFilled, buf.byteLength - offset)
        this.#header.set(buf.subarray(offset, offset + n), this.#headerFilled)
        this.#headerFilled += n
        offset += n
        if (this.#headerFilled < HEADER_SIZE) return
        this.#headerFilled = 0
        const view = new DataView(this.#header.buffer)
        const header = { type: this.#header[0], code: this.#header[1], id: view.getUint32(2), length: view.getUint32(6) }
        if (header.length > this.#maxBody) throw new FrameError(`frame body of ${header.length} bytes is over the limit of ${this.#maxBody}`)
        const sink = this.#onHeader(header)
        if (header.length === 0) {
          sink.end()
          continue
        }
        this.#sink = sink
        this.#remaining = header.length
      } else {
        const n = Math.min(this.#remaining, buf.byteLength - offset)
        const sink = this.#sink
        this.#remaining -= n
        if (this.#remaining === 0) this.#sink = undefined
        sink.write(n === buf.byteLength ? buf : buf.subarray(offset, offset + n))
        offset += n
        if (this.#remaining === 0) sink.end()
      }
    }
  }
}

/** Collects a body into one buffer; `onEnd` receives it. */
export function collect (length: number, onEnd: (body: Uint8Array) => void): BodySink {
  const body = Buffer.allocUnsafe(length)
  let filled = 0
  return {
    write (piece) {
      body.set(piece, filled)
      filled += piece.byteLength
    },
    end () { onEnd(body) }
  }
}

/** Throws the body away (a response nobody waits for any more). */
export const discard: BodySink = { write () {}, end () {} }

/** Bit i of a bitfield is (byte i>>3) & (0x80 >> (i & 7)), as in BitTorrent. */
export function getBit (bits: Uint8Array, i: number): boolean {
  return ((bits[i >> 3] ?? 0) & (0x80 >> (i & 7))) !== 0
}

export function setBit (bits: Uint8Array, i: number): void {
  bits[i >> 3] |= 0x80 >> (i & 7)
}

export function clearBit (bits: Uint8Array, i: number): void {
  bits[i >> 3] &= ~(0x80 >> (i & 7))
}

// HAVE and ANNOUNCE bodies (chunk-exchange.ts describes them).

/**
 * The image's CIDs in binary, one after another (36 bytes each), as HAVE requests carry them;
 * made once per manifest and kept for the few images asked about last. Each HAVE parsed every CID
 * string again before: ~0.5 s of the main thread for a 100 GiB image (100,000 chunks), for every
 * peer asked, when a session starts and every second it waits for chunks nobody is known to hold.
 */
export function cidsInBinary (cids: readonly string[]): Uint8Array {
  let binary = binaryCids.get(cids)
  if (binary == null) {
    const bytes = new Uint8Array(cids.length * CID_BYTES)
    cids.forEach((cid, i) => { bytes.set(cidToBytes(cid), i * CID_BYTES) })
    binary = bytes
    if (binaryCids.size >= KEPT_BINARY_CIDS) binaryCids.delete(binaryCids.keys().next().value as readonly string[])
  } else {
    binaryCids.delete(cids)
  }
  binaryCids.set(cids, binary)
  return binary
}

/** Images whose binary CIDs are kept (the least recently asked about goes first). */
const KEPT_BINARY_CIDS = 8
const binaryCids = new Map<readonly string[], Uint8Array>()

// One of each for every HAVE and ANNOUNCE: a TextDecoder made per ANNOUNCE heard was half of the
// receiver's cost of it (perf of the swarm, docs/benchmarks.md, chatter).
const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder()

/**
 * A HAVE request for `cids` (36-byte CIDs one after another, `cidsInBinary`), the part of an
 * image of `total` chunks starting at index `from`.
 */
export function encodeHaveRequest (key: string, mine: HaveSelf & { bits: Uint8Array }, total: number, from: number, cids: Uint8Array): Uint8Array {
  const keyBytes = utf8Encoder.encode(key)
  const count = cids.byteLength / CID_BYTES
  const bitBytes = Math.ceil(count / 8)
  const head = 2 + keyBytes.byteLength + 9
  const body = new Uint8Array(head + bitBytes + cids.byteLength)
  const view = new DataView(body.buffer)
  view.setUint16(0, keyBytes.byteLength)
  body.set(keyBytes, 2)
  body[2 + keyBytes.byteLength] = stateByte(mine)
  view.setUint32(2 + keyBytes.byteLength + 1, total)
  view.setUint32(2 + keyBytes.byteLength + 5, from)
  body.set(mine.bits.subarray(from / 8, from / 8 + bitBytes), head)
  // The last byte may carry bits of the next part: they are not this part's.
  if (count % 8 !== 0) body[head + bitBytes - 1] &= 0xff << (8 - count % 8)
  body.set(cids, head + bitBytes)
  return body
}

export function encodeAnnounce (key: string, note: HaveSelf & { total: number, indices: readonly number[] }): Uint8Array {
  const keyBytes = utf8Encoder.encode(key)
  const head = 2 + keyBytes.byteLength + 5
  const body = new Uint8Array(head + 4 * note.indices.length)
  const view = new DataView(body.buffer)
  view.setUint16(0, keyBytes.byteLength)
  body.set(keyBytes, 2)
  body[2 + keyBytes.byteLength] = stateByte(note)
  view.setUint32(2 + keyBytes.byteLength + 1, note.total)
  note.indices.forEach((index, i) => { view.setUint32(head + 4 * i, index) })
  return body
}

/** The head of HAVE and ANNOUNCE bodies: key, state, total; `at` is where the rest begins. */
export function readNoteHead (body: Uint8Array, what: string): { key: string, state: HaveState, nearSeed: boolean, total: number, at: number } {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  if (body.byteLength < 2) throw new FrameError(`${what} body too short`)
  const keyLength = view.getUint16(0)
  const at = 2 + keyLength + 5
  if (body.byteLength < at) throw new FrameError(`${what} body too short`)
  const key = utf8Decoder.decode(body.subarray(2, 2 + keyLength))
  return { key, ...readStateByte(body[2 + keyLength]), total: view.getUint32(2 + keyLength + 1), at }
}
