import type { ImageRecord, Manifest, MemberRecord, TaskRecord } from './image.ts'
import type { MetadefRecord } from './metadef.ts'
import type { AbortOptions } from './startable.ts'

/**
 * Durable image metadata. Reads are synchronous from an in-memory view kept equal to disk, so
 * listing and policy checks never wait on I/O; writes resolve once they are on disk.
 * Deleted images stay as records with status `deleted`, so their ids are never reused.
 */
export interface MetadataStore {
  getImage (id: string): ImageRecord | undefined
  images (): Iterable<ImageRecord>
  putImage (image: ImageRecord): Promise<void>
  members (imageId: string): MemberRecord[]
  putMember (member: MemberRecord): Promise<void>
  deleteMember (imageId: string, memberId: string): Promise<void>
  /** The import tasks of one image, or of every image. */
  tasks (imageId?: string): TaskRecord[]
  putTask (task: TaskRecord): Promise<void>
  getManifest (imageId: string): Promise<Manifest | undefined>
  /** Atomically records the image's data and the image itself (upload or stage finished). */
  dataAdded (image: ImageRecord, manifest: Manifest): Promise<void>
  /** Atomically forgets the image's data and writes the image; returns the CIDs nothing refers to any more. */
  dataRemoved (image: ImageRecord): Promise<string[]>
  isReferenced (cid: string): Promise<boolean>
  /** Every metadata definition this agent holds, deleted ones included. */
  metadefs (): Iterable<MetadefRecord>
  /** Writes definitions in one batch (a namespace created with its objects, properties, tags). */
  putMetadefs (records: readonly MetadefRecord[]): Promise<void>
}

/**
 * The manifest of an image, wherever it is: this agent's copy, or one fetched from peers (in a
 * mesh) and kept. Undefined when the image names no manifest.
 */
export interface ManifestSource {
  fetch (imageId: string, opts?: AbortOptions): Promise<Manifest | undefined>
}

/**
 * The manifests this agent keeps, as agents exchange them: canonical bytes, content-addressed by
 * the CID each image's replicated record names.
 */
export interface ManifestBook {
  getManifest (imageId: string): Promise<Manifest | undefined>
  /** The CID of the manifest the image names, known before the manifest itself is here. */
  manifestCidOf (imageId: string): string | null
  /** The canonical bytes of the manifest held here (what peers are sent). */
  manifestBytes (imageId: string): Promise<Uint8Array | undefined>
  /**
   * Decodes manifest bytes a peer sent (checked against `manifestCidOf` by the caller) and keeps
   * them while the image still names that manifest.
   */
  manifestArrived (imageId: string, bytes: Uint8Array): Promise<Manifest>
}

/**
 * Per-image transfer figures (metrics). Kept only for images this agent holds and only for the
 * most recently active few, so their number stays bounded whatever the cloud's image count.
 */
export interface ImageTransfers {
  /** Bytes of the image sent to an API client. */
  served (imageId: string, bytes: number): void
  /** The image is no longer held here (evicted or deleted): its figures go. */
  forget (imageId: string): void
}

/** What one pass over an upload stream produced: its chunks and the whole-image digests. */
export interface IngestResult {
  size: number
  cids: string[]
  chunkSize: number
  md5: string
  sha512: string
  /** The first bytes of the image, for format inspection. */
  head: Uint8Array
}

export interface IngestOptions extends AbortOptions {
  /** Fail with ImageTooLargeError once more than this many bytes arrive. */
  maxBytes: number
  /** When known (header or Content-Length), a different byte count fails with ValidationError. */
  expectedSize?: number
  /**
   * false: chunks and their CIDs only, no whole-stream md5 and sha512 (they come back empty), for a
   * caller that stores a part of an image and hashes the whole itself.
   */
  hashWhole?: boolean
}

/**
 * Content-addressed chunk files. A chunk is visible under its CID only once its bytes are on
 * disk and hash to that CID.
 */
export interface ChunkStore {
  readonly chunkSize: number
  has (cid: string): Promise<boolean>
  /** Splits a stream into chunks, stores each once, and hashes the whole. Chunks stay pinned until `release`. */
  ingest (source: AsyncIterable<Uint8Array>, opts: IngestOptions): Promise<IngestResult>
  /**
   * Streams bytes [start, end] (inclusive) of the image the manifest describes. A yielded buffer
   * may be reused for the chunk after next: consume (or copy) each before pulling two more.
   */
  read (manifest: Manifest, start: number, end: number, opts?: AbortOptions): AsyncIterable<Uint8Array>
  /** Unpins chunks an ingest stored, once the manifest naming them is durable or the upload was abandoned. */
  release (cids: Iterable<string>): void
  /** Deletes chunk files that are neither pinned nor referenced. */
  collect (cids: Iterable<string>, isReferenced: (cid: string) => Promise<boolean>): Promise<number>
}

/** Single chunks, for serving peers and keeping what peers send. */
export interface ChunkBlocks {
  has (cid: string): Promise<boolean>
  /**
   * Bumped whenever a chunk is added or deleted, so a caller may keep what it derived from `has`
   * (the mesh's share of an image held here) while it stays. Optional: without it nothing is kept.
   */
  readonly generation?: number
  /** The chunk's bytes; ChunkUnavailableError when it is not here. */
  readChunk (cid: string, opts?: AbortOptions): Promise<Uint8Array>
  /**
   * Optional: the chunk's bytes in a buffer the store reuses once `release` is called (the caller
   * must not touch the bytes after). Serving peers with it allocates no buffer per chunk.
   */
  readChunkLease? (cid: string): Promise<Lease>
  /**
   * Optional: a buffer of `length` bytes to receive a chunk into, reused by the store once
   * released. `putChunk` of bytes in it writes them around the page cache, with no copy; a store
   * out of such buffers lends a fresh one.
   */
  lendBuffer? (length: number): Lease
  /** Stores bytes under their CID after checking they hash to it (ChunkIntegrityError otherwise). */
  putChunk (cid: string, bytes: Uint8Array, opts?: PutChunkOptions): Promise<void>
}

/** Bytes in a buffer that is reused once `release` is called: the holder must not touch them after. */
export interface Lease {
  readonly bytes: Uint8Array
  /** Hands the buffer back; calls after the first do nothing. */
  release: () => void
  /**
   * Optional: the SHA-256 of `bytes`, computed off the calling thread (a store's receive buffers
   * are memory a hash worker reads in place). `bytes` must not change until it settles.
   */
  sha256?: () => Promise<Uint8Array>
}

export interface PutChunkOptions extends AbortOptions {
  /**
   * The caller hashed these very bytes to `cid` itself, in this process (the mesh does, as they
   * arrive from a peer), so the store does not hash them a second time.
   */
  verified?: boolean
}

/**
 * Streams an image's bytes from wherever its chunks are: local files, or peers (which are then
 * kept locally). The local-only implementation is the chunk store itself. As with
 * `ChunkStore.read`, a yielded buffer is only valid until the consumer pulls the one after next
 * (or the iteration ends, or the consumer stops it).
 */
export interface ImageReader {
  read (imageId: string, manifest: Manifest, start: number, end: number, opts?: AbortOptions): AsyncIterable<Uint8Array>
}

/** One field of a replicated record: its value and the hybrid-logical clock of its last write. */
export interface VersionedField {
  v: unknown
  c: string
  /** The field was removed (an extra property unset). */
  d?: true
}

/**
 * A record as replicas exchange it: every field versioned, so that merging two copies in any
 * order, any number of times, gives the same result (last writer wins per field; a deleted image
 * stays deleted).
 */
export interface ReplicatedRecord {
  kind: 'image' | 'member' | 'metadef' | 'task'
  /** `<imageId>` for images, `<imageId>!<memberId>` for members, `<type>!<id>` for metadata definitions, `<imageId>!<taskId>` for import tasks. */
  key: string
  fields: Record<string, VersionedField>
  /** The signature of each write (by clock) whose fields the record still holds. */
  w?: Record<string, WriteSeal>
}

/**
 * The signature of one write: the agent that accepted it signs every field it set (name and a
 * hash of the value). Fields a later write replaced are kept as `[name, hash]` in `g`, so the
 * fields still present remain verifiable.
 */
export interface WriteSeal {
  /** Peer id of the signer; the write's clock must carry the replica id derived from it. */
  p: string
  /** Ed25519 signature, base64. */
  s: string
  g?: Array<[string, string]>
}

/** Signs this agent's writes and checks others' (the agents' libp2p Ed25519 keys). */
export interface RecordSigner {
  /** This agent's peer id. */
  readonly id: string
  sign (message: Uint8Array): string
  /** False for a bad signature, a key that is not Ed25519, or a revoked signer. */
  verify (signer: string, message: Uint8Array, signature: string): boolean
}

/** The domain's rules, applied to every record a peer sends before it is merged. */
export interface ReplicationRules {
  /** Why `next` may not replace `prev` (undefined when it may): schema, lengths, quotas, status table. */
  imageRefusal (next: ImageRecord, prev: ImageRecord | undefined): string | undefined
  memberRefusal (next: MemberRecord): string | undefined
  metadefRefusal (next: MetadefRecord): string | undefined
  taskRefusal (next: TaskRecord): string | undefined
}

/** A record from a peer that was not merged, and why. */
export interface RejectedRecord {
  kind: ReplicatedRecord['kind']
  key: string
  /** 'signature' | 'invalid' | 'write-once' | 'clock'. */
  reason: 'signature' | 'invalid' | 'write-once' | 'clock'
  detail: string
  /** The peer it came from, when the caller said. */
  from?: string
}

export type ChangeOrigin = 'local' | 'remote'

/** The replication face of the metadata store, which the mesh's metadata sync drives. */
export interface Replica {
  readonly replicaId: string
  records (): Iterable<ReplicatedRecord>
  /** The latest clock in a record: equal versions mean equal records. */
  versionOf (record: ReplicatedRecord): string
  get (kind: ReplicatedRecord['kind'], key: string): ReplicatedRecord | undefined
  /**
   * Merges copies from peers (`from`, for the record of rejections); returns how many records
   * changed. Records that fail a check are skipped and reported to `onRejected` listeners.
   */
  merge (records: readonly ReplicatedRecord[], from?: string): Promise<number>
  /** Called after each local or merged change, with the copy stored then; returns an unsubscribe function. */
  onChange (listener: (record: ReplicatedRecord, origin: ChangeOrigin) => void): () => void
}

/** An image this agent keeps as a cache entry: what Glance's `GET /v2/cache` lists. */
export interface CachedImage {
  imageId: string
  /** Downloads served from this agent. */
  hits: number
  /** Epoch milliseconds of the last download, or of caching when never read. */
  lastAccessed: number
  /** Epoch milliseconds when the copy here became complete. */
  lastModified: number
  size: number
}

export type CacheClearTarget = 'cache' | 'queue' | 'all'

/**
 * The agent's image cache: the images it holds for its hypervisor, which Glance's cache API
 * (`/v2/cache`) lists and manages, and the room uploads may use. Evicting never drops the last
 * copies the mesh has of an image.
 */
export interface ImageCache {
  list (): Promise<{ cached: CachedImage[], queued: string[] }>
  /** Fetches the whole image in the background (Glance's prefetch queue). */
  queue (imageId: string): void
  /** Drops the cache entry and the image's bytes here, unless they are among the mesh's last copies. */
  remove (imageId: string): Promise<void>
  clear (target: CacheClearTarget): Promise<void>
  /** Makes room for an upload of this many bytes, evicting if need be; StorageFullError when it cannot. */
  reserve (bytes: number): Promise<void>
  /** Bytes an upload may write without evicting: the cap and the free disk, whichever is less. */
  room (): Promise<number>
}

/** The slice of a pino logger components log through (a pino child fits as is). */
export interface Logger {
  debug: (obj: object, msg?: string) => void
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
  error: (obj: object, msg?: string) => void
}

function noop (): void {}

/** For components built without a logger (tests, tools). */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop }

/** Bytes an import reads from outside the mesh (web-download, another region's Glance). */
export interface ExternalData {
  body: AsyncIterable<Uint8Array>
  /** Content-Length, when the source sent one. */
  size?: number
}

/** Fetches a web-download URI, refusing any target (after redirects too) the operator's rules forbid. */
export interface WebSource {
  open (uri: string, opts?: AbortOptions): Promise<ExternalData>
}

/** Which image of which Glance a glance-download reads, and the caller's token to ask with. */
export interface RemoteImageRef {
  region: string
  /** Catalog interface: public, internal or admin. */
  interface: string
  imageId: string
  token: string
}

/** Another region's Glance, found in the Keystone catalog and asked as the caller (glance-download). */
export interface RemoteGlance {
  /** The remote image's document (`GET /v2/images/{id}`). */
  image (ref: RemoteImageRef, opts?: AbortOptions): Promise<Record<string, unknown>>
  /** Its bytes (`GET /v2/images/{id}/file`). */
  data (ref: RemoteImageRef, opts?: AbortOptions): Promise<ExternalData>
}

/** An image's bytes converted to another disk format, kept in a temporary file until disposed of. */
export interface ConvertedImage {
  body: AsyncIterable<Uint8Array>
  size: number
  dispose (): Promise<void>
}

/** Converts image data between disk formats (qemu-img), for imports (Glance's image_conversion plugin). */
export interface ImageConverter {
  /**
   * `check` is given the source's first and last bytes and its size before any tool reads it, and
   * throws to refuse it (the format inspector's safety checks).
   */
  convert (source: AsyncIterable<Uint8Array>, opts: { from: string, to: string, check: (head: Uint8Array, size: number, tail: Uint8Array) => void, signal?: AbortSignal }): Promise<ConvertedImage>
}
