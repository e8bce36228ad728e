import { ChunkUnavailableError } from '@peerglance/interface'
import type { ChunkStore, ImageRecord, Logger, Manifest, MetadataStore } from '@peerglance/interface'
import type { GlanceClient } from './glance-client.ts'

export interface OriginFetchComponents {
  client: GlanceClient
  chunks: Pick<ChunkStore, 'ingest' | 'release' | 'collect' | 'read'>
  metadata: Pick<MetadataStore, 'getImage' | 'dataAdded' | 'isReferenced' | 'getManifest'>
  logger: Logger
  /** Image bytes received from the upstream (the /metrics counter). */
  received: (bytes: number) => void
}

/** The digest an image's bytes must have, by the algorithm we compute (sha512, or md5). */
export interface ExpectedHash { algo: 'sha512' | 'md5', value: string }

/** What `image` (the upstream's, or our record of it) says its bytes hash to. */
export function expectedHash (image: { os_hash_algo?: unknown, os_hash_value?: unknown, checksum?: unknown }): ExpectedHash | undefined {
  if (image.os_hash_algo === 'sha512' && typeof image.os_hash_value === 'string') return { algo: 'sha512', value: image.os_hash_value }
  return typeof image.checksum === 'string' ? { algo: 'md5', value: image.checksum } : undefined
}

/** Buffers a reader of a fetch in progress may be behind the upstream before the fetch waits for it. */
const TAP_DEPTH = 64

/**
 * Reads an upstream image's bytes into this agent's chunk store, once however many readers want
 * them, and verifies the whole against the upstream's own `size`, `checksum` and `os_hash_value`
 * (asked of the upstream itself at the start, never taken from a replicated record, which a peer
 * may have forged) before the image's manifest is recorded, and so replicated. Only then can other
 * agents read it from peers. The reader that started the fetch streams the bytes as they arrive;
 * its last bytes wait for the verdict, so a client never gets a whole body that is wrong.
 */
export class OriginFetch {
  readonly #c: OriginFetchComponents
  readonly #running = new Map<string, Promise<Manifest>>()
  readonly #stopping = new AbortController()

  constructor (components: OriginFetchComponents) {
    this.#c = components
  }

  stop (): void {
    this.#stopping.abort(new Error('agent stopping'))
  }

  /** Whether a fetch of the image runs here now. */
  fetching (imageId: string): boolean {
    return this.#running.has(imageId)
  }

  /**
   * What the upstream itself says the image's bytes hash to: sha512 (`os_hash_value`, Glance's
   * default algorithm), else md5 (`checksum`); undefined when it cannot say.
   */
  async upstreamHash (imageId: string): Promise<ExpectedHash | undefined> {
    const truth = await this.#c.client.image(imageId).catch(() => undefined)
    return truth?.status === 'active' ? expectedHash({ os_hash_algo: truth.os_hash_algo, os_hash_value: truth.os_hash_value, checksum: truth.checksum }) : undefined
  }

  /** Whether the upstream answers and shows the image active. */
  async reachable (imageId: string): Promise<boolean> {
    return (await this.#c.client.image(imageId).catch(() => undefined))?.status === 'active'
  }

  /** Fetches the whole image in the background (a peer asked, or a prefetch); resolves with its manifest. */
  async fetch (imageId: string): Promise<Manifest> {
    return await this.#start(imageId, undefined)
  }

  /**
   * Bytes [start, end] of an upstream image this agent has no data for. A whole read starts (or
   * joins, by waiting for) the one fetch into the chunk store; a partial read is passed through
   * from the upstream as it is (Range), nothing kept.
   */
  async * read (image: ImageRecord, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const size = image.size ?? 0
    if (start !== 0 || end !== size - 1) {
      yield * this.passThrough(image, start, end, signal)
      return
    }
    const running = this.#running.get(image.id)
    if (running != null) {
      const manifest = await running
      yield * this.#c.chunks.read(manifest, start, end, { signal })
      return
    }
    const tap = new Tap(TAP_DEPTH)
    const done = this.#start(image.id, tap)
    done.catch(err => { tap.fail(err as Error) })
    signal?.addEventListener('abort', () => { tap.close() }, { once: true })
    let held: Uint8Array | undefined
    for await (const part of tap) {
      if (held != null) yield held
      held = part
    }
    // The last bytes go out only once the whole matched the upstream's hashes.
    await done
    if (held != null) yield held
  }

  /** Bytes [start, end] straight from the upstream (HTTP Range), kept nowhere. */
  async * passThrough (image: ImageRecord, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    yield * this.#body(await this.#c.client.download(image.id, start, end, signal))
  }

  async #start (imageId: string, tap: Tap | undefined): Promise<Manifest> {
    let pending = this.#running.get(imageId)
    if (pending == null) {
      pending = this.#run(imageId, tap).finally(() => { this.#running.delete(imageId) })
      this.#running.set(imageId, pending)
    } else {
      tap?.close()
    }
    return await pending
  }

  async #run (imageId: string, tap: Tap | undefined): Promise<Manifest> {
    const { client, chunks, metadata, logger } = this.#c
    const started = Date.now()
    const truth = await client.image(imageId)
    if (truth == null) throw new ChunkUnavailableError(`Image ${imageId} is no longer in the upstream Glance.`)
    const record = metadata.getImage(imageId)
    if (record == null || record.status !== 'active' || truth.status !== 'active') {
      throw new ChunkUnavailableError(`Image ${imageId} is not active in the upstream Glance.`)
    }
    // The mesh's record may carry another agent's forgery; the upstream's own word decides.
    if (record.size !== truth.size || record.os_hash_value !== truth.os_hash_value || record.checksum !== truth.checksum) {
      throw new ChunkUnavailableError(`The mesh's record of image ${imageId} does not match the upstream Glance's; its data is not served until the next refresh mends it.`)
    }
    const size = Number(truth.size)
    const body = await client.download(imageId, 0, Math.max(0, size - 1), this.#stopping.signal)
    const self = this
    const source = (async function * () {
      for await (const part of self.#body(body)) {
        if (tap != null) await tap.push(part)
        yield part
      }
      tap?.end()
    })()
    const ingested = await chunks.ingest(source, { maxBytes: size, expectedSize: size, signal: this.#stopping.signal })
    const cids = ingested.cids
    let kept = false
    try {
      const hashOk = truth.os_hash_algo !== 'sha512' || ingested.sha512 === truth.os_hash_value
      if (ingested.size !== size || ingested.md5 !== truth.checksum || !hashOk) {
        throw new ChunkUnavailableError(`The upstream sent data for image ${imageId} that does not match its own checksum; nothing was kept.`)
      }
      const current = metadata.getImage(imageId)
      if (current == null || current.status !== 'active') throw new ChunkUnavailableError(`Image ${imageId} was deleted while its data was fetched.`)
      const manifest: Manifest = { size, chunkSize: ingested.chunkSize, cids, md5: ingested.md5, sha512: ingested.sha512, staged: false }
      await metadata.dataAdded(current, manifest)
      kept = true
      logger.info({ imageId, bytes: size, ms: Date.now() - started }, 'fetched an image from the upstream')
      return manifest
    } finally {
      chunks.release(cids)
      if (!kept) await chunks.collect(new Set(cids), async cid => await metadata.isReferenced(cid))
    }
  }

  async * #body (body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const part of body as unknown as AsyncIterable<Uint8Array>) {
      this.#c.received(part.byteLength)
      yield part
    }
  }
}

/**
 * One reader's view of a fetch in progress: the fetch pushes each buffer (waiting while the reader
 * is `depth` behind), the reader iterates. A reader that went away is dropped; the fetch goes on.
 */
class Tap implements AsyncIterable<Uint8Array> {
  readonly #depth: number
  readonly #queue: Uint8Array[] = []
  #ended = false
  #closed = false
  #error: Error | undefined
  #wake: (() => void) | undefined
  #room: (() => void) | undefined

  constructor (depth: number) { this.#depth = depth }

  async push (part: Uint8Array): Promise<void> {
    if (this.#closed) return
    this.#queue.push(part)
    this.#wake?.()
    while (this.#queue.length >= this.#depth && !this.#closed) await new Promise<void>(resolve => { this.#room = resolve })
  }

  end (): void { this.#ended = true; this.#wake?.() }
  fail (err: Error): void { this.#error = err; this.#ended = true; this.#wake?.() }
  close (): void { this.#closed = true; this.#queue.length = 0; this.#room?.(); this.#wake?.() }

  async * [Symbol.asyncIterator] (): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const part = this.#queue.shift()
        if (part != null) {
          this.#room?.()
          yield part
          continue
        }
        if (this.#error != null) throw this.#error
        if (this.#ended || this.#closed) return
        await new Promise<void>(resolve => { this.#wake = resolve })
      }
    } finally {
      this.close()
    }
  }
}
