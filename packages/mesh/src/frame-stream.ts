/**
 * What the chunk exchange needs of a byte stream, so that the same client and server run over a
 * libp2p stream (Noise + yamux) and over the bulk channel's TLS sockets (bulk-channel.ts).
 */
import type { Socket } from 'node:net'
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface FrameStreamHandlers {
  /** Bytes arrived; a handler that throws (a frame the reader refuses) aborts the stream with its error. */
  data: (data: Uint8Array | Uint8ArrayList) => void
  /** The remote end will send nothing more (it may still read). */
  remoteDone: () => void
  /** The stream is gone, with the error that ended it if any. */
  closed: (err?: Error) => void
  /**
   * Where the next bytes may be read to (the rest of a body being received), or undefined: only
   * a socket with an Inbox asks; `data` then gets a view of the bytes in place.
   */
  space?: () => Uint8Array | undefined
}

export interface FrameStream {
  /**
   * Queues bytes; false when the writer should wait for `onDrain`. `onSent` is called once the
   * stream holds no reference to them any more (the socket wrote them, or failed): only the bulk
   * channel's sockets call it, a libp2p stream never does (its buffers are left to the GC).
   */
  send: (data: Uint8ArrayList, onSent?: () => void) => boolean
  onDrain: (signal?: AbortSignal) => Promise<void>
  /** True while bytes can still be sent. */
  readonly writable: boolean
  /** Ends our side once what was queued is sent. */
  close: () => Promise<void>
  abort: (err: Error) => void
  /** Called once, right after the stream is made. */
  listen: (handlers: FrameStreamHandlers) => void
  debugState: () => Record<string, unknown>
}

export function libp2pFrameStream (stream: Stream): FrameStream {
  return {
    send: data => stream.send(data),
    onDrain: async signal => { await stream.onDrain({ signal }) },
    get writable () { return stream.writeStatus === 'writable' },
    close: async () => { await stream.close() },
    abort: err => { stream.abort(err) },
    listen: handlers => {
      stream.addEventListener('message', evt => { guarded(handlers.data, evt.data, err => { stream.abort(err) }) })
      stream.addEventListener('remoteCloseWrite', () => { handlers.remoteDone() })
      stream.addEventListener('close', evt => { handlers.closed(evt.error) })
    },
    debugState: () => ({ status: stream.status, write: stream.writeStatus, needsDrain: stream.writableNeedsDrain })
  }
}

/**
 * Where a socket that reads into buffers it is given (net's `onread` option) delivers its bytes:
 * to whoever reads it now (the credential check, then the frame stream). Node's TLS socket
 * otherwise hands over each 16 KiB record in a fresh buffer: 16,384 of them per GiB received, which
 * with the chunk buffers were what started the agents' full garbage collections (docs/benchmarks.md,
 * issue 8). Each read goes into the reader's `space` when it offers one (the unfilled rest of a
 * chunk being received: OpenSSL's output lands there, and nobody copies it again), else into the
 * inbox's own buffer, whose bytes are only valid during the call: readers copy what they keep.
 */
export class Inbox {
  #reader: ((data: Buffer) => void) | undefined
  #space: (() => Uint8Array | undefined) | undefined
  /** Bytes that came while nobody read (copies), for the next reader. */
  readonly #held: Buffer[] = []
  /** Bytes read into a reader's space, and into the inbox's own buffer (for tests and benches). */
  readonly stats = { inPlace: 0, buffered: 0 }

  /**
   * The socket option: `buffer` is asked after every read where the next one goes (Node keeps
   * the answer until then, so a space must stay valid until the socket reads again or closes).
   */
  onread (size: number): { buffer: () => Uint8Array, callback: (n: number, buf: Uint8Array) => boolean } {
    const own = Buffer.allocUnsafe(size)
    return {
      buffer: () => this.#space?.() ?? own,
      callback: (n, buf) => {
        if (buf === own) this.stats.buffered += n
        else this.stats.inPlace += n
        const data = Buffer.from(buf.buffer, buf.byteOffset, n)
        if (this.#reader != null) this.#reader(data)
        else this.#held.push(Buffer.from(data))
        return true
      }
    }
  }

  /** Reads from now on, starting with what was held; `space` says where the next bytes may go. */
  read (reader: (data: Buffer) => void, space?: () => Uint8Array | undefined): void {
    this.#reader = reader
    this.#space = space
    for (const data of this.#held.splice(0)) reader(data)
  }

  /** Stops reading; `unread` goes back first for the next reader (copied). */
  stop (unread?: Uint8Array): void {
    this.#reader = undefined
    this.#space = undefined
    if (unread != null && unread.byteLength > 0) this.#held.unshift(Buffer.from(unread))
  }
}

/**
 * Frames up to this size go to the socket as one buffer (one TLS record); larger ones as their
 * own buffers, one write each.
 */
const SMALL_FRAME = 16 * 1024

/**
 * A socket (here a TLS one, after its handshake and the membership check) as a FrameStream. A
 * chunk's body is one write into OpenSSL, which cuts it into 16 KiB records without a JavaScript
 * event per record. The header goes in a write of its own, not corked with the body: a TLS socket
 * turns a corked header and body (a writev) into one fresh buffer holding a copy of both, which
 * with the agent's fixed mmap threshold was an mmap, 256 page faults and a munmap per 1 MiB chunk
 * sent, 0.79 against 0.23 CPU-s per GiB on the sender (docs/benchmarks.md, issue 8).
 */
export function socketFrameStream (socket: Socket, inbox?: Inbox): FrameStream {
  let failure: Error | undefined
  socket.on('error', err => { failure ??= err })
  const abort = (err: Error): void => {
    failure ??= err
    // What the socket still decrypts goes nowhere, and never into a body's space.
    inbox?.read(() => {})
    socket.destroy()
  }
  return {
    send: (data, onSent) => {
      // A request or a short answer: one small copy, one record.
      if (data.byteLength <= SMALL_FRAME) return socket.write(data.subarray(), onSent)
      const bufs = [...data]
      let ok = true
      // Writes complete in order: the last one's callback runs once the socket has written every buffer of the frame.
      bufs.forEach((buf, i) => { ok = socket.write(buf, i === bufs.length - 1 ? onSent : undefined) })
      return ok
    },
    onDrain: async signal => {
      if (!socket.writableNeedDrain) return
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          socket.off('drain', done)
          socket.off('close', done)
          signal?.removeEventListener('abort', aborted)
          resolve()
        }
        const aborted = (): void => {
          done()
          reject(signal?.reason as Error)
        }
        socket.on('drain', done)
        socket.on('close', done)
        signal?.addEventListener('abort', aborted, { once: true })
      })
    },
    get writable () { return socket.writable && !socket.destroyed },
    close: async () => { socket.end() },
    abort,
    listen: handlers => {
      const data = (data: Buffer): void => { guarded(handlers.data, data, abort) }
      if (inbox != null) inbox.read(data, handlers.space)
      else socket.on('data', data)
      socket.on('end', handlers.remoteDone)
      socket.on('close', () => { handlers.closed(failure) })
      socket.resume()
    },
    debugState: () => ({ destroyed: socket.destroyed, writable: socket.writable, needsDrain: socket.writableNeedDrain })
  }
}

function guarded<T> (handle: (data: T) => void, data: T, abort: (err: Error) => void): void {
  try {
    handle(data)
  } catch (err) {
    abort(err as Error)
  }
}
