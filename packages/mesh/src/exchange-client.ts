/**
 * The requesting side of the chunk exchange (chunk-exchange.ts has the protocol): per peer a few
 * long-lived outbound streams (`PeerLink`), requests pipelined on them and matched to responses
 * in order, timeouts, and one-way frames (ANNOUNCE).
 */
import { AbortedError } from '@peerglance/interface'
import type { Logger, PeerId, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { MAX_FRAME_BODY } from './constants.ts'
import { NotHeldError, ProtocolError, RequestTimeoutError, SentElsewhereError } from './errors.ts'
import { CODE_NOT_FOUND, CODE_OK, CODE_SENT_ELSEWHERE, collect, discard, frame, FrameReader, HEADER_SIZE, MAX_ERROR_BODY } from './framing.ts'
import type { BodySink, FrameHeader } from './framing.ts'
import type { FrameStream } from './frame-stream.ts'

/** The slice of libp2p the exchange uses. */
export interface ChunkNetwork {
  handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId, protocols: string | string[], options?: { signal?: AbortSignal, maxOutboundStreams?: number }) => Promise<Stream>
  /** The IP address our connection to the peer reaches it at (where its bulk channel listens). */
  remoteHost?: (peer: PeerId) => string | undefined
}

export interface ExchangeTraffic {
  /** Bytes of chunk protocol frames this agent sent to / received from a peer. */
  sent: (peer: string, bytes: number) => void
  received: (peer: string, bytes: number) => void
  /** A chunk's bytes were read to answer a peer's GET. */
  served?: (cid: string, bytes: number) => void
}

export interface ClientComponents {
  traffic?: ExchangeTraffic
}

/** Opens one more stream to the peer: a libp2p chunk stream, or a bulk channel. */
export type Dial = (signal: AbortSignal | undefined) => Promise<FrameStream>

/**
 * Collects an OK body; `finish` returns it, or throws when it is not acceptable (a bad hash), or
 * a promise of either (a hash computed elsewhere): it lets go itself when it throws or rejects.
 */
export interface ResultSink<T = Uint8Array> {
  write: (piece: Uint8Array) => void
  finish: () => T | Promise<T>
  /**
   * The body will not be finished (its stream closed), or nobody waits for it any more: let go
   * of what holds it (a lent buffer). Not called after `finish`, which lets go itself when it
   * throws, but for a `finish` whose promise settled after its caller gave up.
   */
  drop?: () => void
  /** The body's part not filled yet, for the stream to read into (framing.ts, `BodySink.space`). */
  space?: () => Uint8Array | undefined
}

export function collector (length: number): ResultSink {
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
  /** Lets go of an OK body begun and not finished (its sink's `drop`). */
  drop?: () => void
  timer?: NodeJS.Timeout
}


/** One long-lived outbound stream and the requests waiting on it, oldest first. */
class Channel {
  readonly stream: FrameStream
  readonly pending: Pending[] = []
  /**
   * The request whose response body is arriving now. The reader takes a request off `pending`
   * when its header comes, so without this a stream that dies mid-body would leave that request
   * to its timeout (15 s) instead of failing it at once.
   */
  receiving: Pending | undefined
  closed = false

  constructor (stream: FrameStream) {
    this.stream = stream
  }
}


/** The outbound streams to one peer. */
export class PeerLink {
  readonly #peer: PeerId
  readonly #key: string
  readonly #components: ClientComponents
  readonly #log: Logger
  readonly #dial: Dial
  readonly #max: number
  readonly #depth: number
  readonly #channels: Channel[] = []
  #opening = 0
  /**
   * While no stream is up, the one open under way: requests wait for it rather than dial too, and
   * fail with its error (undefined when it got a stream, or was only given up by its caller). A
   * peer that went away cost a failed dial per waiting request before.
   */
  #firstOpen: Promise<Error | undefined> | undefined
  readonly #waiters: Array<() => void> = []
  #closed: Error | undefined

  constructor (peer: PeerId, components: ClientComponents, log: Logger, dial: Dial, max: number, depth: number) {
    this.#peer = peer
    this.#key = peer.toString()
    this.#components = components
    this.#log = log
    this.#dial = dial
    this.#max = max
    this.#depth = depth
  }

  /** True once close() was called: a new link must be made. */
  get closed (): boolean { return this.#closed != null }

  debugState (): Record<string, unknown> {
    return { opening: this.#opening, waiters: this.#waiters.length, channels: this.#channels.map(c => ({ pending: c.pending.length, ...c.stream.debugState() })) }
  }

  close (err: Error): void {
    this.#closed = err
    for (const channel of this.#channels.splice(0)) channel.stream.abort(err)
    for (const wake of this.#waiters.splice(0)) wake()
  }

  async request<T> (id: number, type: number, body: Uint8Array, timeoutMs: number, signal: AbortSignal | undefined, okSink: (length: number) => ResultSink<T>, code = 0): Promise<T> {
    const channel = await this.#acquire(signal)
    const { promise, resolve, reject } = Promise.withResolvers<T>()
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
          pending.drop = inner.drop
          return {
            write (piece) { inner.write(piece) },
            space: inner.space,
            end () {
              pending.drop = undefined
              // The caller gave up (aborted) while the body arrived: nobody takes the result.
              if (pending.abandoned) {
                inner.drop?.()
                return
              }
              let result: T | Promise<T>
              try {
                result = inner.finish()
              } catch (err) {
                reject(err as Error)
                return
              }
              if (!(result instanceof Promise)) {
                resolve(result)
                return
              }
              // Finished later: the caller may have given up (timeout, abort) meanwhile, and then
              // nobody takes the body, which must go back.
              result.then(value => {
                if (pending.abandoned) inner.drop?.()
                else resolve(value)
              }, reject)
            }
          }
        }
        if (header.length > MAX_ERROR_BODY) throw new ProtocolError('error response too long')
        return collect(header.length, message => {
          const text = new TextDecoder().decode(message)
          if (header.code === CODE_NOT_FOUND) reject(new NotHeldError(`peer ${this.#key} does not hold it`))
          else if (header.code === CODE_SENT_ELSEWHERE) reject(new SentElsewhereError(`peer ${this.#key} sent it to another downloader lately`))
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
      const data = frame(type, code, id, body)
      const length = data.byteLength
      if (!channel.stream.send(data)) await channel.stream.onDrain(signal)
      this.#components.traffic?.sent(this.#key, length)
      return await promise
    } finally {
      clearTimeout(pending.timer)
      signal?.removeEventListener('abort', onAbort)
      pending.abandoned = true
      this.#wake()
    }
  }

  /** Sends a one-way frame on the least busy stream (when there is none, as a request would get one: one dial for all who wait). */
  async notify (type: number, body: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    if (this.#closed != null) throw this.#closed
    let channel: Channel | undefined
    for (const c of this.#channels) if (!c.closed && (channel == null || c.pending.length < channel.pending.length)) channel = c
    channel ??= await this.#acquire(signal)
    const data = frame(type, 0, 0, body)
    if (!channel.stream.send(data)) await channel.stream.onDrain(signal)
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
      if (best == null && this.#firstOpen != null) {
        const failed = await this.#firstOpen
        if (failed != null) throw failed
        continue
      }
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
    const opening = this.#openStream(signal)
    if (this.#channels.length === 0 && this.#firstOpen == null) {
      const outcome = opening.then(() => undefined, (err: Error) => signal?.aborted === true ? undefined : err)
      this.#firstOpen = outcome
      void outcome.then(() => { if (this.#firstOpen === outcome) this.#firstOpen = undefined })
    }
    return await opening
  }

  async #openStream (signal: AbortSignal | undefined): Promise<Channel> {
    this.#opening++
    let stream: FrameStream
    try {
      stream = await this.#dial(signal)
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
      // Closed by now (the hook may cut it): the request already failed, and no body will come
      // to finish a sink, which would keep what it holds (a lent buffer).
      if (pending.abandoned || channel.closed) return discard
      const sink = pending.sink(header)
      if (header.length === 0) return sink
      return {
        write (piece) { sink.write(piece) },
        space: sink.space,
        end () {
          channel.receiving = undefined
          sink.end()
        }
      }
    })
    stream.listen({
      data: data => { reader.push(data) },
      space: () => reader.space(),
      // A server closes its side only when it is going away: fail what waits now, not at its timeout.
      remoteDone: () => { stream.abort(new ProtocolError(`peer ${key} closed the stream`)) },
      closed: error => { this.#channelClosed(channel, error) }
    })
    this.#log.trace('opened chunk stream to %s', key)
    return channel
  }

  #channelClosed (channel: Channel, error: Error | undefined): void {
    const key = this.#key
    channel.closed = true
    const index = this.#channels.indexOf(channel)
    if (index >= 0) this.#channels.splice(index, 1)
    const err = error ?? new ProtocolError(`stream to ${key} closed`)
    // Not an AbortedError nor NotHeldError, so the swarm counts it against this peer and asks another holder at once.
    channel.receiving?.reject(new ProtocolError(`stream to ${key} closed while a response was arriving`, { cause: err }))
    channel.receiving?.drop?.()
    channel.receiving = undefined
    for (const pending of channel.pending.splice(0)) pending.reject(err)
    this.#wake()
  }

}
