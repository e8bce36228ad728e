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
 * Where a socket that reads into one buffer of its own (net's `onread` option) delivers its bytes:
 * to whoever reads it now (the credential check, then the frame stream). Node's TLS socket
 * otherwise hands over each 16 KiB record in a fresh buffer: 16,384 of them per GiB received, which
 * with the chunk buffers were what started the agents' full garbage collections (docs/benchmarks.md,
 * issue 8). The bytes given to a reader are only valid during the call: readers copy what they keep.
 */
export class Inbox {
  #reader: ((data: Buffer) => void) | undefined
  /** Bytes that came while nobody read (copies), for the next reader. */
  readonly #held: Buffer[] = []

  /** The socket option: every read goes into one buffer of `size` bytes, then to the reader. */
  onread (size: number): { buffer: Buffer, callback: (n: number, buf: Uint8Array) => boolean } {
    return {
      buffer: Buffer.allocUnsafe(size),
      callback: (n, buf) => {
        const data = Buffer.from(buf.buffer, buf.byteOffset, n)
        if (this.#reader != null) this.#reader(data)
        else this.#held.push(Buffer.from(data))
        return true
      }
    }
  }

  /** Reads from now on, starting with what was held. */
  read (reader: (data: Buffer) => void): void {
    this.#reader = reader
    for (const data of this.#held.splice(0)) reader(data)
  }

  /** Stops reading; `unread` goes back first for the next reader (copied). */
  stop (unread?: Uint8Array): void {
    this.#reader = undefined
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
      if (inbox != null) inbox.read(data)
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
