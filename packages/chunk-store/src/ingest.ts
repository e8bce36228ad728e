import { createHash } from 'node:crypto'
import { AbortedError, cidFromSha256, ImageTooLargeError, PeerglanceError, ShuttingDownError, ValidationError } from '@peerglance/interface'
import type { IngestOptions, IngestResult, Logger } from '@peerglance/interface'
import { syncDir } from './chunk-files.ts'
import type { ChunkFiles } from './chunk-files.ts'
import { alignedChunks } from './aligned-chunks.ts'
import { HEAD_SIZE } from './constants.ts'
import { DirSyncer } from './dir-syncer.ts'
import { eachLimit } from './each-limit.ts'
import type { ImageHasher } from './image-hasher.ts'
import type { ImageHasherPool } from './image-hasher-pool.ts'
import type { Pins } from './pins.ts'
import { received } from './young-gc.ts'

export interface IngestContext {
  files: ChunkFiles
  pins: Pins
  hashers: ImageHasherPool
  chunkSize: number
  writeConcurrency: number
  log: Logger
  /** Aborts when the store stops. */
  shutdown: AbortSignal
}

function noop (): void {}

/**
 * One pass over an upload: packs the stream into chunks, stores each under its sha256 CID, and
 * feeds the whole-image md5/sha512 workers. At most `writeConcurrency` chunks are being written
 * and hashed at once; the source is not read further until one of them is done.
 */
export class Ingest {
  readonly #ctx: IngestContext
  readonly #opts: IngestOptions
  readonly #signal: AbortSignal
  readonly #cids: string[] = []
  readonly #created = new Set<string>()
  readonly #inFlight = new Set<Promise<void>>()
  readonly #dirs = new DirSyncer(syncDir)
  /**
   * Chunk buffers not being written or hashed: one per chunk in flight plus the one being filled,
   * taken on the first byte (the hasher's, which every upload through it reuses) and reused, so
   * no fresh pages are faulted in per chunk.
   */
  #spare: Uint8Array[] | undefined
  readonly #head = new Uint8Array(HEAD_SIZE)
  #headLength = 0
  #size = 0
  #failed = false
  #failure: unknown
  /** Rejects the pending `#next` when the upload is aborted. */
  #interrupt: ((err: Error) => void) | undefined

  constructor (ctx: IngestContext, opts: IngestOptions) {
    this.#ctx = ctx
    this.#opts = opts
    this.#signal = opts.signal == null ? ctx.shutdown : AbortSignal.any([opts.signal, ctx.shutdown])
  }

  async run (source: AsyncIterable<Uint8Array>): Promise<IngestResult> {
    const { maxBytes, expectedSize } = this.#opts
    if (expectedSize != null && expectedSize > maxBytes) throw tooLarge(maxBytes)
    const hasher = this.#opts.hashWhole === false ? undefined : this.#ctx.hashers.acquire()
    try {
      await this.#consume(source, hasher)
      await this.#settle()
      if (this.#failed) throw this.#failure
      if (expectedSize != null && this.#size !== expectedSize) throw sizeMismatch(this.#size, expectedSize)
      const { md5, sha512 } = hasher == null ? { md5: '', sha512: '' } : await hasher.digest()
      await this.#dirs.flush(this.#ctx.writeConcurrency)
      return {
        size: this.#size,
        cids: [...this.#cids],
        chunkSize: this.#ctx.chunkSize,
        md5,
        sha512,
        head: this.#head.slice(0, this.#headLength)
      }
    } catch (err) {
      await this.#settle()
      await this.#dirs.settle()
      await hasher?.reset().catch(noop)
      await this.#discard()
      throw err
    } finally {
      if (hasher != null) this.#ctx.hashers.release(hasher)
    }
  }

  async #consume (source: AsyncIterable<Uint8Array>, hasher: ImageHasher | undefined): Promise<void> {
    const { chunkSize } = this.#ctx
    const iterator = source[Symbol.asyncIterator]()
    let chunk: Uint8Array | undefined
    let filled = 0
    // One abort listener for the whole upload, not one per piece (16,384 per GiB of 64 KiB reads).
    const signal = this.#signal
    const onAbort = (): void => { this.#interrupt?.(this.#abortError()) }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      for (let step = await this.#next(iterator); step.done !== true; step = await this.#next(iterator)) {
        const piece = step.value
        this.#count(piece)
        for (let offset = 0; offset < piece.length;) {
          // Nothing writes to a chunk from dispatch until its write and both digests are done.
          this.#spare ??= hasher?.chunkBuffers(chunkSize, this.#ctx.writeConcurrency + 1) ?? alignedChunks(chunkSize, this.#ctx.writeConcurrency + 1)
          chunk ??= this.#spare.pop() as Uint8Array
          const n = Math.min(piece.length - offset, chunkSize - filled)
          chunk.set(piece.subarray(offset, offset + n), filled)
          filled += n
          offset += n
          if (filled === chunkSize) {
            await this.#dispatch(chunk, hasher)
            chunk = undefined
            filled = 0
          }
        }
      }
    } catch (err) {
      // Stop the source (a request body stops buffering) without waiting: a source that hangs
      // is one of the reasons to be here.
      try {
        iterator.return?.().catch(noop)
      } catch {}
      throw err
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
    if (chunk != null && filled > 0) await this.#dispatch(chunk.subarray(0, filled), hasher)
  }

  /** The source's next piece, or the abort error as soon as the signal fires (a stalled source never answers). */
  async #next (iterator: AsyncIterator<Uint8Array>): Promise<IteratorResult<Uint8Array>> {
    if (this.#signal.aborted) throw this.#abortError()
    try {
      return await new Promise<IteratorResult<Uint8Array>>((resolve, reject) => {
        this.#interrupt = reject
        iterator.next().then(resolve, reject)
      })
    } catch (err) {
      if (this.#signal.aborted) throw this.#abortError()
      // Errors the source raises on purpose (a format check, a size limit) keep their meaning;
      // anything else is a connection that went away mid-upload.
      if (err instanceof PeerglanceError) throw err
      throw new AbortedError('The upload ended before all image data arrived.', { cause: err })
    } finally {
      this.#interrupt = undefined
    }
  }

  #count (piece: Uint8Array): void {
    const { maxBytes, expectedSize } = this.#opts
    received(piece.length)
    this.#size += piece.length
    if (this.#size > maxBytes) throw tooLarge(maxBytes)
    if (expectedSize != null && this.#size > expectedSize) throw sizeMismatch(this.#size, expectedSize)
    if (this.#headLength < HEAD_SIZE) {
      const n = Math.min(piece.length, HEAD_SIZE - this.#headLength)
      this.#head.set(piece.subarray(0, n), this.#headLength)
      this.#headLength += n
    }
  }

  async #dispatch (chunk: Uint8Array, hasher: ImageHasher | undefined): Promise<void> {
    while (this.#inFlight.size >= this.#ctx.writeConcurrency) await Promise.race(this.#inFlight)
    if (this.#failed) throw this.#failure
    if (this.#signal.aborted) throw this.#abortError()

    const cid = cidFromSha256(createHash('sha256').update(chunk).digest())
    this.#cids.push(cid)
    // Pinned before looking for the file, so a concurrent collect cannot delete a chunk this
    // upload is about to count as already stored.
    this.#ctx.pins.pin(cid)
    const work = Promise.allSettled([this.#store(cid, chunk), hasher?.update(chunk)]).then(results => {
      this.#inFlight.delete(work)
      if (chunk.length === this.#ctx.chunkSize) this.#spare?.push(chunk)
      for (const result of results) {
        if (result.status === 'rejected' && !this.#failed) {
          this.#failed = true
          this.#failure = result.reason
        }
      }
    })
    this.#inFlight.add(work)
  }

  async #store (cid: string, chunk: Uint8Array): Promise<void> {
    const { files } = this.#ctx
    if (await files.put(cid, chunk, { aligned: true })) this.#created.add(cid)
    // Also when the name was there already: a cached chunk's may not be durable yet.
    this.#dirs.add(files.dirOf(cid))
  }

  async #settle (): Promise<void> {
    await Promise.all(this.#inFlight)
  }

  /** Undoes what this upload did: its pins, and the chunk files it created that nobody else holds. */
  async #discard (): Promise<void> {
    const { files, pins, log, writeConcurrency } = this.#ctx
    for (const cid of this.#cids) pins.unpin(cid)
    await eachLimit(this.#created, writeConcurrency, async cid => {
      try {
        await files.deleteUnlessPinned(cid)
      } catch (err) {
        log.warn({ err, cid }, 'could not delete chunk of failed upload')
      }
    })
  }

  #abortError (): Error {
    if (this.#ctx.shutdown.aborted) return new ShuttingDownError('The image store is shutting down.')
    return new AbortedError('The upload was aborted.', { cause: this.#opts.signal?.reason })
  }
}

// Glance's wording for ImageSizeLimitExceeded on upload (glance/api/v2/image_data.py).
function tooLarge (maxBytes: number): ImageTooLargeError {
  return new ImageTooLargeError(`The incoming image is too large: the limit is ${maxBytes} bytes.`)
}

// When the stream runs over, `actual` is what had arrived when it was cut off.
function sizeMismatch (actual: number, expected: number): ValidationError {
  return new ValidationError(`Size of uploaded data (${actual}) does not match the expected size (${expected}).`)
}
