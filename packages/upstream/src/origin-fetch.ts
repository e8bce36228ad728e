import { ChunkUnavailableError } from '@peerglance/interface'
import type { AbortOptions, ChunkStore, ImageRecord, Logger, Manifest, MetadataStore } from '@peerglance/interface'
import type { GlanceClient } from './glance-client.ts'
import { isMirrored } from './mirror.ts'
import { PieceBoard } from './piece-board.ts'
import type { BoardAnswer, BoardRequest } from './piece-board.ts'
import { SharedFetch } from './shared-fetch.ts'
import type { PiecePeers, PieceRequest } from './shared-fetch.ts'

export interface OriginFetchComponents {
  client: GlanceClient
  chunks: Pick<ChunkStore, 'chunkSize' | 'ingest' | 'release' | 'collect' | 'read'>
  metadata: Pick<MetadataStore, 'getImage' | 'dataAdded' | 'isReferenced' | 'getManifest'>
  /** The other agents: their piece boards, and the pieces they fetched. */
  peers: PiecePeers
  logger: Logger
  /** Image bytes received from the upstream (the /metrics counter). */
  received: (bytes: number) => void
  /** Image bytes of a first fetch received from peers. */
  fromPeers?: (bytes: number) => void
  /** A peer sent a piece that was not the upstream's bytes. */
  lied?: (peer: string) => void
}

/** The digest an image's bytes must have, by the algorithm we compute (sha512, or md5). */
export interface ExpectedHash { algo: 'sha512' | 'md5', value: string }

/** What `image` (the upstream's, or our record of it) says its bytes hash to. */
export function expectedHash (image: { os_hash_algo?: unknown, os_hash_value?: unknown, checksum?: unknown }): ExpectedHash | undefined {
  if (image.os_hash_algo === 'sha512' && typeof image.os_hash_value === 'string') return { algo: 'sha512', value: image.os_hash_value }
  return typeof image.checksum === 'string' ? { algo: 'md5', value: image.checksum } : undefined
}

/** Liars remembered (a bound: a mesh has no more members than this that lie). */
const MAX_DISTRUSTED = 1024

/**
 * Reads an upstream image's bytes into this agent's chunk store, once however many readers want
 * them, and verifies the whole against the upstream's own `size`, `checksum` and `os_hash_value`
 * (asked of the upstream itself at the start, never taken from a replicated record, which a peer
 * may have forged) before the image's manifest is recorded, and so replicated. Agents reading the
 * image at the same time share the fetch: each fetches some pieces from the upstream and reads
 * the others from them (SharedFetch). Readers stream the pieces as they come; their last bytes
 * wait for the verdict, so a client never gets a whole body that is wrong.
 */
export class OriginFetch {
  readonly #c: OriginFetchComponents
  readonly #running = new Map<string, Promise<SharedFetch>>()
  readonly #stopping = new AbortController()
  readonly #board: PieceBoard
  readonly #distrusted = new Set<string>()

  readonly #waitMs: number | undefined

  /** `init.waitMs`: how long a piece another agent is fetching is waited for (tests shorten it). */
  constructor (components: OriginFetchComponents, init: { waitMs?: number } = {}) {
    this.#c = components
    this.#waitMs = init.waitMs
    this.#board = new PieceBoard(imageId => {
      const image = components.metadata.getImage(imageId)
      return image != null && image.status === 'active' && isMirrored(image) ? image.size ?? undefined : undefined
    }, components.chunks.chunkSize)
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

  /** A peer's request to this agent's piece board (`from` as the transport authenticated it). */
  async board (from: string, request: BoardRequest): Promise<BoardAnswer> {
    return await this.#board.ask(from, request)
  }

  /**
   * A piece a peer asks for: one this agent fetched from the upstream itself in a fetch still
   * running, or any piece of the image once its verified manifest is recorded here; undefined
   * otherwise (pieces read from other peers are not passed on, so each piece has one author).
   */
  async piece (request: PieceRequest, opts: AbortOptions = {}): Promise<AsyncIterable<Uint8Array> | undefined> {
    const image = this.#c.metadata.getImage(request.image)
    if (image == null || image.status !== 'active' || !isMirrored(image)) return undefined
    const job = await this.#running.get(request.image)?.catch(() => undefined)
    if (job != null && job.pieceSize === request.pieceSize && job.fetchedHere(request.piece)) return job.readPiece(request.piece, opts)
    const manifest = await this.#c.metadata.getManifest(request.image)
    const start = request.piece * request.pieceSize
    if (manifest == null || start >= manifest.size) return undefined
    return this.#c.chunks.read(manifest, start, Math.min(manifest.size, start + request.pieceSize) - 1, opts)
  }

  /**
   * Bytes [start, end] of an upstream image this agent has no data for. A whole read starts (or
   * joins) the one fetch into the chunk store; a partial read is passed through from the upstream
   * as it is (Range), nothing kept.
   */
  async * read (image: ImageRecord, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const size = image.size ?? 0
    if (start !== 0 || end !== size - 1) {
      yield * this.passThrough(image, start, end, signal)
      return
    }
    // A fetch that finished since the download began left the image here.
    const here = this.#running.has(image.id) ? undefined : await this.#c.metadata.getManifest(image.id)
    if (here != null) {
      yield * this.#c.chunks.read(here, start, end, { signal })
      return
    }
    const job = await this.#start(image.id)
    const versions: number[] = []
    let held: Uint8Array | undefined
    for (let i = 0; i < job.pieces.length; i++) {
      await job.ensure(i)
      versions.push(job.pieces[i].version)
      for await (const part of job.readPiece(i, { signal })) {
        if (held != null) yield held
        held = part
      }
    }
    // The last bytes go out only once the whole matched the upstream's hashes.
    await job.verified
    if (job.replacedSince(versions)) {
      throw new ChunkUnavailableError(`A peer sent bytes of image ${image.id} that were not the upstream's; they were replaced, but this download had them and is cut. The next one is whole.`)
    }
    if (held != null) yield held
  }

  /** Bytes [start, end] straight from the upstream (HTTP Range), kept nowhere. */
  async * passThrough (image: ImageRecord, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    for await (const part of await this.#c.client.download(image.id, start, end, signal) as unknown as AsyncIterable<Uint8Array>) {
      this.#c.received(part.byteLength)
      yield part
    }
  }

  async #start (imageId: string): Promise<SharedFetch> {
    let pending = this.#running.get(imageId)
    if (pending == null) {
      const job = this.#open(imageId)
      pending = job
      this.#running.set(imageId, job)
      job.then(async j => { await this.#keep(j) }).catch(() => {}).finally(() => {
        if (this.#running.get(imageId) === job) this.#running.delete(imageId)
      })
    }
    return await pending
  }

  /** Checks the upstream's own word about the image, and starts fetching it. */
  async #open (imageId: string): Promise<SharedFetch> {
    const { client, metadata, logger } = this.#c
    const truth = await client.image(imageId)
    if (truth == null) throw new ChunkUnavailableError(`Image ${imageId} is no longer in the upstream Glance.`)
    const record = metadata.getImage(imageId)
    if (record == null || record.status !== 'active' || truth.status !== 'active') {
      throw new ChunkUnavailableError(`Image ${imageId} is not active in the upstream Glance.`)
    }
    // The mesh's record may carry another agent's forgery; the upstream's own word decides.
    if (record.size !== truth.size || record.os_hash_value !== truth.os_hash_value || record.checksum !== truth.checksum || typeof truth.checksum !== 'string') {
      throw new ChunkUnavailableError(`The mesh's record of image ${imageId} does not match the upstream Glance's; its data is not served until the next refresh mends it.`)
    }
    return new SharedFetch({
      client,
      chunks: this.#c.chunks,
      peers: this.#c.peers,
      board: this.#board,
      distrusted: this.#distrusted,
      logger,
      received: this.#c.received,
      fromPeers: this.#c.fromPeers ?? (() => {}),
      lied: peer => {
        if (this.#distrusted.size > MAX_DISTRUSTED) this.#distrusted.delete(this.#distrusted.values().next().value as string)
        this.#c.lied?.(peer)
      },
      signal: this.#stopping.signal,
      waitMs: this.#waitMs
    }, imageId, Number(truth.size), { md5: truth.checksum, sha512: truth.os_hash_algo === 'sha512' && typeof truth.os_hash_value === 'string' ? truth.os_hash_value : undefined })
  }

  /** Records the verified manifest (so the image replicates as any other); drops the chunks of a failed fetch. */
  async #keep (job: SharedFetch): Promise<void> {
    const { chunks, metadata, logger } = this.#c
    const started = Date.now()
    try {
      const manifest = await job.verified
      const current = metadata.getImage(job.image)
      if (current == null || current.status !== 'active') throw new ChunkUnavailableError(`Image ${job.image} was deleted while its data was fetched.`)
      await metadata.dataAdded(current, manifest)
      logger.info({ imageId: job.image, bytes: job.size, ms: Date.now() - started }, 'fetched an image from the upstream and peers')
    } catch (err) {
      logger.warn({ imageId: job.image, err: { message: (err as Error).message } }, 'fetching an image from the upstream failed; nothing was kept')
      throw err
    } finally {
      chunks.release(job.pinned)
      // Chunks of a failed fetch, and of pieces replaced after a peer lied, that nothing names.
      await chunks.collect(new Set(job.pinned), async cid => await metadata.isReferenced(cid)).catch(() => 0)
    }
  }
}
