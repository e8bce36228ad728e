import {
  ChunkUnavailableError, ConflictError, ForbiddenError, ImageGoneError, ImageTooLargeError, InvalidStatusTransitionError,
  NotFoundError, ValidationError
} from '@peerglance/interface'
import type { AbortOptions, ChunkStore, Identity, ImageCache, ImageReader, ImageRecord, IngestResult, Manifest, ManifestSource, MetadataStore } from '@peerglance/interface'
import { HEAD_BYTES, TAIL_BYTES, checkUpload, inspect } from './format-inspector.ts'
import type { ImageService } from './image-service.ts'
import { HAS_SERVABLE_DATA, transition } from './status.ts'
import { withSite, withoutSites } from './sites.ts'
import { now } from './time.ts'

export interface UploadOptions {
  /** `x-openstack-image-size` or `Content-Length`, when the client sent one. */
  expectedSize?: number
  signal?: AbortSignal
  requestId?: string
}

export type Download = { image: ImageRecord, manifest: Manifest } | { image: ImageRecord, manifest: null }

const HASH_ALGO = 'sha512'

/**
 * Which agent runs an image's upload, stage or import (Glance's own name for the staging host).
 * After a crash an agent resets only the work it was doing itself: in a mesh, other agents see the
 * same `saving` image.
 */
const WORKER_PROPERTY = 'os_glance_stage_host'

/**
 * The data side of an image: upload (`PUT /file`), stage + import (glance-direct), download and
 * what happens to chunks when an image is deleted. Every failed write puts the image back to
 * `queued` and leaves no chunk behind that nothing refers to (Glance's `_restore`).
 */
export class ImageDataService {
  readonly #images: ImageService
  readonly #metadata: MetadataStore
  readonly #chunks: ChunkStore
  readonly #reader: ImageReader
  /** The chunk store alone, for data this agent just wrote (no need to ask the mesh). */
  readonly #localReader: ImageReader
  readonly #manifests: ManifestSource | undefined
  readonly #room: Pick<ImageCache, 'reserve' | 'room'> | undefined

  /**
   * `reader` serves downloads (the chunk store alone, or peers behind it); `manifests` finds the
   * manifest of an image whose data this agent has never held.
   */
  readonly #hostOf: () => string
  readonly #site: string | undefined

  constructor (components: { images: ImageService, metadata: MetadataStore, chunks: ChunkStore, reader?: ImageReader, manifests?: ManifestSource, room?: Pick<ImageCache, 'reserve' | 'room'> }, init: { host?: string | (() => string), site?: string } = {}) {
    this.#site = init.site
    // A function, because an agent's id is known only once its stores have started.
    const host = init.host ?? 'local'
    this.#hostOf = typeof host === 'function' ? host : () => host
    this.#images = components.images
    this.#metadata = components.metadata
    this.#chunks = components.chunks
    this.#localReader = { read: (_id, manifest, start, end, opts) => this.#chunks.read(manifest, start, end, opts) }
    this.#reader = components.reader ?? this.#localReader
    this.#manifests = components.manifests
    this.#room = components.room
  }

  async upload (who: Identity, id: string, source: AsyncIterable<Uint8Array>, opts: UploadOptions = {}): Promise<ImageRecord> {
    const image = this.#images.authorized(who, id, 'upload_image')
    requireFormats(image)
    if (image.status !== 'queued') throw new InvalidStatusTransitionError(`Image status transition from ${image.status} to saving is not allowed`)
    return await this.#write(image, 'saving', source, opts)
  }

  /** `PUT /stage`: the bytes are kept (and hashed) now; `import` makes them the image's data. */
  async stage (who: Identity, id: string, source: AsyncIterable<Uint8Array>, opts: UploadOptions = {}): Promise<ImageRecord> {
    this.#requireMethod('glance-direct')
    const image = this.#images.authorized(who, id, 'modify_image')
    if (image.status !== 'queued') throw new ConflictError(`Image status transition from ${image.status} to uploading is not allowed`)
    return await this.#write(image, 'uploading', source, opts)
  }

  async #write (image: ImageRecord, during: 'saving' | 'uploading' | 'importing', source: AsyncIterable<Uint8Array>, opts: UploadOptions): Promise<ImageRecord> {
    // Before anything changes: an upload this agent's disk or cache cap cannot hold is refused up
    // front (StorageFullError, 413), not after filling the disk. Without a size, it stops at the room.
    if (this.#room != null && opts.expectedSize != null) await this.#room.reserve(opts.expectedSize)
    const room = this.#room == null ? Infinity : await this.#room.room()
    // The status flips synchronously (the store's view is updated before the write resolves),
    // so a second upload racing this one sees `saving` and gets 409.
    if (image.status !== during) await this.#metadata.putImage(this.#claim(transition(image, during)))
    let ingested: IngestResult | undefined
    try {
      ingested = await this.#chunks.ingest(source, { maxBytes: Math.min(this.#maxBytes(image), room), expectedSize: opts.expectedSize, signal: opts.signal })
      // The ingest kept the head; the tail is read from the chunks just written, all local.
      const virtualSize = during !== 'uploading' ? await this.#inspect(image, ingested, this.#localReader, ingested.head) : null
      const current = this.#metadata.getImage(image.id)
      if (current == null || current.status !== during) {
        throw new ImageGoneError(`Image ${image.id} could not be found after upload. The image may have been deleted during the upload.`)
      }
      const manifest: Manifest = {
        size: ingested.size, chunkSize: ingested.chunkSize, cids: ingested.cids, md5: ingested.md5, sha512: ingested.sha512, staged: during === 'uploading'
      }
      const finished: ImageRecord = during !== 'uploading'
        ? { ...this.#placedHere(release(transition(current, 'active'))), size: ingested.size, virtual_size: virtualSize, checksum: ingested.md5, os_hash_algo: HASH_ALGO, os_hash_value: ingested.sha512 }
        : { ...current, size: ingested.size, updated_at: now() }
      await this.#metadata.dataAdded(finished, manifest)
      return finished
    } catch (err) {
      await this.#restore(image.id, during)
      if (ingested != null) await this.#forget(ingested.cids)
      throw err
    } finally {
      if (ingested != null) this.#chunks.release(ingested.cids)
    }
  }

  /** Format inspection (glance-api.md §23) over the image's first and last bytes. */
  async #inspect (image: Pick<ImageRecord, 'id' | 'disk_format' | 'container_format'>, manifest: Pick<Manifest, 'size' | 'chunkSize' | 'cids'>, reader: ImageReader, knownHead?: Uint8Array): Promise<number | null> {
    const { size } = manifest
    const head = knownHead ?? await slice(reader, image.id, manifest, 0, Math.min(size, HEAD_BYTES))
    const tail = await slice(reader, image.id, manifest, Math.max(0, size - TAIL_BYTES), size)
    return checkUpload(image.disk_format as string, image.container_format as string, inspect(head, size, tail), {
      requireImageFormatMatch: this.#images.rules.requireImageFormatMatch
    }).virtualSize
  }

  /** Remaining room under `image_size_cap` and the owner's `user_storage_quota`. */
  #maxBytes (image: ImageRecord): number {
    const { imageSizeCap, userStorageQuota } = this.#images.rules
    if (userStorageQuota <= 0) return imageSizeCap
    const room = userStorageQuota - this.#images.usage(image.owner).bytes
    if (room <= 0) throw new ImageTooLargeError(`Denying attempt to upload image because it exceeds the quota: The size of the data will exceed the limit. ${-room} bytes remaining.`)
    return Math.min(imageSizeCap, room)
  }

  /** Back to `queued` with no data, unless someone deleted the image meanwhile. */
  async #restore (id: string, during: 'saving' | 'uploading' | 'importing'): Promise<void> {
    const current = this.#metadata.getImage(id)
    if (current?.status === during) await this.#metadata.dataRemoved(withoutSites(release(transition(current, 'queued'))))
  }

  /** Data written here: this agent's site holds a complete copy. */
  #placedHere (image: ImageRecord): ImageRecord {
    return this.#site == null ? image : withSite(image, this.#site, 'active')
  }

  #claim (image: ImageRecord): ImageRecord {
    return { ...image, properties: { ...image.properties, [WORKER_PROPERTY]: this.#hostOf() } }
  }

  async #forget (cids: readonly string[]): Promise<void> {
    await this.#chunks.collect(new Set(cids), async cid => await this.#metadata.isReferenced(cid))
  }

  /**
   * An import's bytes from outside the mesh (web-download, glance-download, a conversion's
   * output), written to an image already `importing`: hashed, capped and inspected as an upload
   * is, then the image is active and this agent's site holds it. On failure the image is back
   * to `queued` with nothing stored.
   */
  async importData (image: ImageRecord, source: AsyncIterable<Uint8Array>, opts: UploadOptions = {}): Promise<ImageRecord> {
    return await this.#write(image, 'importing', source, opts)
  }

  /** glance-direct: the staged bytes (here or on the agent that staged them) become the image's data. */
  async importStaged (image: ImageRecord): Promise<ImageRecord> {
    const manifest = await this.#metadata.getManifest(image.id) ?? await this.#manifests?.fetch(image.id)
    if (manifest == null || !manifest.staged) throw new NotFoundError('No staging data found for this image.')
    // Staged data may sit on the agent that staged it: read through peers.
    const virtualSize = await this.#inspect(image, manifest, this.#reader)
    const current = this.#metadata.getImage(image.id)
    if (current?.status !== 'importing') throw new ImageGoneError('Image was deleted during import.')
    // Staged here (every chunk on this disk): this agent's site holds the image already.
    const local = await this.#metadata.getManifest(image.id) != null && (await Promise.all(manifest.cids.map(async cid => await this.#chunks.has(cid)))).every(Boolean)
    const activated = release(transition(current, 'active'))
    const active: ImageRecord = {
      ...(local ? this.#placedHere(activated) : activated), size: manifest.size, virtual_size: virtualSize, checksum: manifest.md5, os_hash_algo: HASH_ALGO, os_hash_value: manifest.sha512
    }
    await this.#metadata.dataAdded(active, { ...manifest, staged: false })
    return active
  }

  /** The staged bytes of an image (here or on the agent that staged them), e.g. to convert them. */
  async * readStaged (id: string): AsyncIterable<Uint8Array> {
    const manifest = await this.#metadata.getManifest(id) ?? await this.#manifests?.fetch(id)
    if (manifest == null || !manifest.staged) throw new NotFoundError('No staging data found for this image.')
    if (manifest.size === 0) return
    // Copies: the reader reuses its buffers, and a file writer may hold several at once.
    for await (const part of this.#reader.read(id, manifest, 0, manifest.size - 1)) yield Buffer.from(part)
  }

  /** An import that failed: back to `queued`, and the chunks nothing else uses go. */
  async importFailed (id: string): Promise<void> {
    const manifest = await this.#metadata.getManifest(id)
    await this.#restore(id, 'importing')
    if (manifest != null) await this.#forget(manifest.cids)
  }

  /** Marks the image as worked on by this agent (Glance's `os_glance_stage_host`). */
  claim (image: ImageRecord): ImageRecord {
    return this.#claim(image)
  }

  /** This agent's site: the store uploads and imports that ran here land in. */
  get site (): string | undefined { return this.#site }

  /** What `GET /file` streams; `manifest: null` means "no data yet", which Glance answers with 204. */
  async download (who: Identity, id: string, opts: AbortOptions = {}): Promise<Download> {
    const image = this.#images.find(who, id)
    // Deactivation is checked before the policy (image_data.py download).
    if (image.status === 'deactivated' && !this.#images.policy.isAdmin(who)) {
      throw new ForbiddenError('The requested image has been deactivated. Image data download is prohibited.')
    }
    this.#images.policy.enforce('download_image', who, image)
    if (!HAS_SERVABLE_DATA.has(image.status)) return { image, manifest: null }
    const manifest = await this.#metadata.getManifest(id) ?? await this.#manifests?.fetch(id, opts)
    if (manifest == null) {
      if (this.#manifests == null) return { image, manifest: null }
      throw new ChunkUnavailableError(`The data of image ${id} is not available from this agent or any peer right now.`)
    }
    return { image, manifest: manifest.staged ? null : manifest }
  }

  read (imageId: string, manifest: Manifest, start: number, end: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    return this.#reader.read(imageId, manifest, start, end, { signal })
  }

  /**
   * After a crash: uploads and imports that were running are gone, so their images go back to
   * `queued` with no data (what Glance's restore would have done). Completed stages are kept.
   * Returns how many images were reset.
   */
  async recover (): Promise<number> {
    let reset = 0
    for (const image of [...this.#metadata.images()]) {
      if (image.properties[WORKER_PROPERTY] !== this.#hostOf()) continue
      const interrupted = image.status === 'saving' || image.status === 'importing' ||
        (image.status === 'uploading' && (await this.#metadata.getManifest(image.id))?.staged !== true)
      if (!interrupted) continue
      await this.#metadata.dataRemoved(release(transition(image, 'queued')))
      reset++
    }
    return reset
  }

  #requireMethod (name: string): void {
    if (!this.#images.rules.enabledImportMethods.includes(name)) throw new NotFoundError(`Import method ${name} is not enabled.`)
  }
}

/** The image without the mark of the agent that was working on it. */
function release (image: ImageRecord): ImageRecord {
  if (!(WORKER_PROPERTY in image.properties)) return image
  const { [WORKER_PROPERTY]: _, ...properties } = image.properties
  return { ...image, properties }
}

async function slice (reader: ImageReader, imageId: string, manifest: Pick<Manifest, 'size' | 'chunkSize' | 'cids'>, start: number, end: number): Promise<Uint8Array> {
  if (end <= start) return new Uint8Array(0)
  const parts: Uint8Array[] = []
  // Copies: readers reuse their buffers.
  for await (const part of reader.read(imageId, manifest as Manifest, start, end - 1)) parts.push(Buffer.from(part))
  return Buffer.concat(parts)
}

function requireFormats (image: ImageRecord): void {
  if (image.disk_format == null || image.container_format == null) {
    throw new ValidationError('Properties disk_format, container_format must be set prior to saving data.')
  }
}

/** Once an image is deleted: its data goes, and so do chunks no other image uses (ImageService's `imageDeleted`). */
export async function dropImageData (stores: { metadata: Pick<MetadataStore, 'dataRemoved' | 'isReferenced'>, chunks: Pick<ChunkStore, 'collect'> }, image: ImageRecord): Promise<void> {
  const orphans = await stores.metadata.dataRemoved(image)
  await stores.chunks.collect(orphans, async cid => await stores.metadata.isReferenced(cid))
}
