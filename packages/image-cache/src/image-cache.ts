import { StorageFullError } from '@peerglance/interface'
import type { AbortOptions, CacheClearTarget, CachedImage, ImageCache, ImageReader, ImageTransfers, Logger, Manifest, Startable } from '@peerglance/interface'
import { CacheState } from './cache-state.ts'
import { bytesToFree, evictionOrder } from './eviction.ts'
import type { Candidate } from './eviction.ts'

/** What the cache needs of the agent: its local copies, the mesh's view of them, and the disk. */
export interface Holdings {
  /** Images whose manifest this agent keeps: their size and the bytes of them held here. */
  held (): Promise<Array<{ imageId: string, size: number, bytes: number }>>
  /** Complete copies other agents hold, as far as the peers this agent is connected to say; asking may stop at `enough`. */
  replicas (imageId: string, enough: number): Promise<number>
  /** Reads the whole image through the mesh, keeping every chunk. */
  fetch (imageId: string, signal: AbortSignal): Promise<void>
  /** Forgets the copy here: its manifest, and the chunks no other image here names. */
  drop (imageId: string): Promise<void>
  /** Bytes of chunk files; bytes free and in all on their file system. */
  usage (): Promise<{ used: number, free: number, total: number }>
}

export interface ImageCacheComponents {
  holdings: Holdings
  logger: Logger
  /** Per-image transfer figures: client bytes counted here, every figure dropped with the image. */
  transfers?: ImageTransfers
}

export interface ImageCacheInit {
  /** The JSON file that keeps hits, access times and pins across restarts. */
  statePath: string
  /** Cap on chunk bytes; null means `maxDiskPercent` of the file system. */
  maxBytes?: number | null
  maxDiskPercent?: number
  /** Eviction starts above highWatermark × cap and stops at lowWatermark × cap. */
  highWatermark?: number
  lowWatermark?: number
  /** Complete copies that must remain on other agents before this one may evict its copy. */
  minReplicas?: number
  /** Free disk kept for LevelDB, logs and the file system, whatever the cap. */
  reserveBytes?: number
  sweepIntervalMs?: number
  /** How often the images queued through Glance's cache API are fetched (Glance's cache_prefetcher_interval). */
  prefetchIntervalMs?: number
  /** Images carrying one of these tags are prefetched here as soon as they are active. */
  prefetchTags?: string[]
}

const DEFAULTS = {
  maxDiskPercent: 80,
  highWatermark: 0.9,
  lowWatermark: 0.75,
  minReplicas: 2,
  reserveBytes: 1024 ** 3,
  sweepIntervalMs: 30_000,
  prefetchIntervalMs: 300_000
}

/** How long an order for an image whose record has not arrived yet is kept; metadata takes seconds. */
const EXPECT_MS = 60_000
const MAX_EXPECTED = 1000

/**
 * The images this agent keeps for its hypervisor. Above the high watermark it evicts the least
 * recently read images, never a pinned one, an image being read, or one whose complete copies on
 * other agents are fewer than `minReplicas` (so an image seeded here stays until it has spread).
 * Glance's cache API maps onto it: listed entries are images fetched through the mesh or queued
 * for prefetch; an image uploaded here is the mesh's copy, not a cache entry, until queued.
 */
export class LruImageCache implements ImageCache, Startable {
  readonly [Symbol.toStringTag] = '@peerglance/image-cache'
  readonly #c: ImageCacheComponents
  readonly #init: Required<Omit<ImageCacheInit, 'maxBytes'>> & { maxBytes: number | null }
  readonly #state: CacheState
  readonly #queue: string[] = []
  /** Images ordered here before their record arrived: image id → until when the order holds. */
  readonly #expected = new Map<string, number>()
  readonly #readers = new Map<string, number>()
  #prefetching: { imageId: string, abort: AbortController } | undefined
  #sweeping: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  #running = false
  /** Running totals, for metrics and the status document. */
  readonly stats = { evictions: 0, evictedBytes: 0 }

  constructor (components: ImageCacheComponents, init: ImageCacheInit) {
    this.#c = components
    this.#init = { ...DEFAULTS, prefetchTags: [], ...init, maxBytes: init.maxBytes ?? null }
    this.#state = new CacheState(init.statePath)
  }

  async start (): Promise<void> {
    if (this.#running) return
    await this.#state.load()
    this.#running = true
    this.#timer = setInterval(() => { void this.sweep() }, this.#init.sweepIntervalMs)
    this.#timer.unref()
  }

  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    clearInterval(this.#timer)
    this.#queue.length = 0
    this.#prefetching?.abort.abort()
    await this.#sweeping
    await this.#state.flush()
  }

  // ---- events from the agent ----

  /**
   * `inner` as the API's downloads read it: an image being read is not evicted meanwhile (least
   * recently read goes first), one read whole here becomes a cache entry, the bytes are counted.
   */
  reader (inner: ImageReader): ImageReader {
    return { read: (imageId, manifest, start, end, opts) => this.#read(inner, imageId, manifest, start, end, opts) }
  }

  async * #read (inner: ImageReader, imageId: string, manifest: Manifest, start: number, end: number, opts?: AbortOptions): AsyncGenerator<Uint8Array> {
    const done = this.#reading(imageId)
    try {
      for await (const part of inner.read(imageId, manifest, start, end, opts)) {
        this.#c.transfers?.served(imageId, part.byteLength)
        yield part
      }
      if (start === 0 && end === manifest.size - 1) this.#complete(imageId)
    } finally {
      done()
    }
  }

  /** A download of the image starts here; call the returned function when it ends. */
  #reading (imageId: string): () => void {
    const e = this.#state.entry(imageId)
    e.hits++
    e.lastAccessed = Date.now()
    this.#state.changed()
    this.#readers.set(imageId, (this.#readers.get(imageId) ?? 0) + 1)
    let done = false
    return () => {
      if (done) return
      done = true
      const n = (this.#readers.get(imageId) ?? 1) - 1
      if (n <= 0) this.#readers.delete(imageId); else this.#readers.set(imageId, n)
    }
  }

  /**
   * A download read the whole image here: it is a cache entry now (as a Glance API node caches
   * what it serves). An image only uploaded here is the mesh's copy, not a cache entry.
   */
  #complete (imageId: string): void {
    this.#listed(imageId)
    void this.sweep()
  }

  #listed (imageId: string): void {
    const e = this.#state.entry(imageId)
    if (e.lastModified === 0) e.lastModified = Date.now()
    if (e.lastAccessed === 0) e.lastAccessed = e.lastModified
    e.listed = true
    this.#state.changed()
  }

  /** The image was deleted (here or elsewhere): nothing to keep or fetch. */
  forget (imageId: string): void {
    this.#c.transfers?.forget(imageId)
    if (this.#state.entries.delete(imageId)) this.#state.changed()
    this.#dequeue(imageId)
  }

  /**
   * Another agent's operator ordered this image here (`peerglance prefetch --agents`): queue it
   * now if its record says it is active, or when the record arrives within `withinMs`.
   */
  order (image: { id: string, status: string } | undefined, id: string, withinMs = EXPECT_MS): void {
    if (image?.status === 'active') { this.fetchNow(id); return }
    if (this.#expected.size >= MAX_EXPECTED) this.#expected.delete(this.#expected.keys().next().value!)
    this.#expected.set(id, Date.now() + withinMs)
  }

  /** An image record changed: prefetch it if it was ordered here or carries a tag the operator named. */
  imageChanged (image: { id: string, status: string, tags: readonly string[] }): void {
    if (image.status !== 'active') return
    const until = this.#expected.get(image.id)
    if (until != null) {
      this.#expected.delete(image.id)
      if (until >= Date.now()) { this.fetchNow(image.id); return }
    }
    if (this.#init.prefetchTags.length === 0) return
    if (!image.tags.some(t => this.#init.prefetchTags.includes(t))) return
    if ((this.#state.entries.get(image.id)?.lastModified ?? 0) > 0) return
    this.fetchNow(image.id)
  }

  pin (imageId: string, pinned: boolean): void {
    this.#state.entry(imageId).pinned = pinned
    this.#state.changed()
  }

  isPinned (imageId: string): boolean {
    return this.#state.entries.get(imageId)?.pinned === true
  }

  /**
   * Keeps an image for this agent's site, or lets it go: a pin of its own, apart from the
   * operator's (dropping a site never unpins what the operator pinned), kept across restarts
   * with the rest of the cache's state.
   */
  pinForSite (imageId: string, kept: boolean): void {
    this.#state.entry(imageId).sitePinned = kept
    this.#state.changed()
  }

  isSitePinned (imageId: string): boolean {
    return this.#state.entries.get(imageId)?.sitePinned === true
  }

  /** The images kept for this agent's site, as remembered across restarts. */
  sitePinned (): string[] {
    return [...this.#state.entries].filter(([, e]) => e.sitePinned).map(([id]) => id)
  }

  // ---- Glance's cache API ----

  async list (): Promise<{ cached: CachedImage[], queued: string[] }> {
    const cached: CachedImage[] = []
    for (const h of await this.#c.holdings.held()) {
      const e = this.#state.entries.get(h.imageId)
      if (e?.listed !== true || h.bytes < h.size) continue
      cached.push({ imageId: h.imageId, hits: e.hits, lastAccessed: e.lastAccessed, lastModified: e.lastModified, size: h.size })
    }
    const queued = [...this.#queue]
    if (this.#prefetching != null) queued.unshift(this.#prefetching.imageId)
    return { cached, queued }
  }

  /**
   * Glance's cache-queue: the image waits, listed in `queued_images`, for the prefetcher, which
   * runs `prefetchIntervalMs` later (Glance's runs every cache_prefetcher_interval) or sooner when
   * an operator's prefetch starts it.
   */
  queue (imageId: string): void {
    if (!this.#running || this.#queue.includes(imageId) || this.#prefetching?.imageId === imageId) return
    this.#queue.push(imageId)
    setTimeout(() => { void this.#prefetchNext() }, this.#init.prefetchIntervalMs).unref()
  }

  /** An operator's prefetch: queued, and the prefetcher runs now. */
  fetchNow (imageId: string): void {
    this.queue(imageId)
    void this.#prefetchNext()
  }

  async remove (imageId: string): Promise<void> {
    this.#dequeue(imageId)
    const e = this.#state.entries.get(imageId)
    if (e != null) {
      e.listed = false
      this.#state.changed()
    }
    if (await this.#mayEvict(imageId)) {
      const held = (await this.#c.holdings.held()).find(h => h.imageId === imageId)
      await this.#evict(imageId, held?.bytes ?? 0, 'removed from the cache')
    }
  }

  async clear (target: CacheClearTarget): Promise<void> {
    if (target !== 'cache') {
      this.#queue.length = 0
      this.#prefetching?.abort.abort()
    }
    if (target === 'queue') return
    for (const [imageId, e] of this.#state.entries) if (e.listed) await this.remove(imageId)
  }

  /** Bytes of image data here, the cap they are held to, and the disk's free bytes. */
  async usage (): Promise<{ used: number, max: number, free: number }> {
    const { used, free, total } = await this.#c.holdings.usage()
    return { used, max: this.#max(total), free }
  }

  async room (): Promise<number> {
    const { used, free, total } = await this.#c.holdings.usage()
    return Math.max(0, Math.min(this.#max(total) - used, free - this.#init.reserveBytes))
  }

  async reserve (bytes: number): Promise<void> {
    if (await this.room() >= bytes) return
    const { used, free, total } = await this.#c.holdings.usage()
    const max = this.#max(total)
    const needed = Math.max(used + bytes - max, this.#init.reserveBytes + bytes - free)
    const freed = await this.#evictUpTo(needed, 'room for an upload')
    if (freed >= needed) return
    throw new StorageFullError(`Not enough space on this agent for ${bytes} bytes of image data: the cache holds ${used} of its ${max} bytes and the disk has ${free} free, and no more can be evicted without losing the mesh's last copies.`)
  }

  // ---- eviction ----

  /** Evicts down to the low watermark when above the high one (and when free disk runs short). */
  async sweep (): Promise<void> {
    if (!this.#running) return
    if (this.#sweeping != null) { await this.#sweeping; return }
    this.#sweeping = (async () => {
      const { used, free, total } = await this.#c.holdings.usage()
      const { highWatermark: high, lowWatermark: low, reserveBytes } = this.#init
      const needed = Math.max(bytesToFree({ used, max: this.#max(total), high, low }), reserveBytes - free)
      if (needed > 0) await this.#evictUpTo(needed, 'cache above its high watermark')
    })().catch(err => { this.#c.logger.warn({ err }, 'cache sweep failed') }).finally(() => { this.#sweeping = undefined })
    await this.#sweeping
  }

  async #evictUpTo (needed: number, reason: string): Promise<number> {
    const candidates: Candidate[] = (await this.#c.holdings.held()).map(h => {
      const e = this.#state.entries.get(h.imageId)
      return { imageId: h.imageId, bytes: h.bytes, lastAccessed: e?.lastAccessed ?? 0, pinned: e?.pinned === true || e?.sitePinned === true }
    })
    let freed = 0
    for (const c of evictionOrder(candidates)) {
      if (freed >= needed) break
      if (c.bytes === 0 || !await this.#mayEvict(c.imageId)) continue
      await this.#evict(c.imageId, c.bytes, reason)
      freed += c.bytes
    }
    return freed
  }

  async #mayEvict (imageId: string): Promise<boolean> {
    if (this.isPinned(imageId) || this.isSitePinned(imageId) || this.#readers.has(imageId)) return false
    const { minReplicas } = this.#init
    return await this.#c.holdings.replicas(imageId, minReplicas) >= minReplicas
  }

  async #evict (imageId: string, bytes: number, reason: string): Promise<void> {
    await this.#c.holdings.drop(imageId)
    this.#c.transfers?.forget(imageId)
    this.stats.evictions++
    this.stats.evictedBytes += bytes
    const e = this.#state.entries.get(imageId)
    if (e != null) {
      e.listed = false
      e.lastModified = 0
      this.#state.changed()
    }
    this.#c.logger.info({ imageId, bytes, reason }, 'evicted image')
  }

  #max (total: number): number {
    return this.#init.maxBytes ?? Math.floor(total * this.#init.maxDiskPercent / 100)
  }

  // ---- prefetch ----

  #dequeue (imageId: string): void {
    const i = this.#queue.indexOf(imageId)
    if (i >= 0) this.#queue.splice(i, 1)
    if (this.#prefetching?.imageId === imageId) this.#prefetching.abort.abort()
  }

  /** One image at a time: prefetch competes with the hypervisor's own reads for disk and links. */
  async #prefetchNext (): Promise<void> {
    if (this.#prefetching != null) return
    const imageId = this.#queue.shift()
    if (imageId == null || !this.#running) return
    const abort = new AbortController()
    this.#prefetching = { imageId, abort }
    const started = Date.now()
    try {
      await this.#c.holdings.fetch(imageId, abort.signal)
      this.#listed(imageId)
      this.#c.logger.info({ imageId, ms: Date.now() - started }, 'prefetched image')
    } catch (err) {
      if (!abort.signal.aborted) this.#c.logger.warn({ err, imageId }, 'prefetch failed')
    } finally {
      this.#prefetching = undefined
    }
    void this.sweep()
    void this.#prefetchNext()
  }
}
