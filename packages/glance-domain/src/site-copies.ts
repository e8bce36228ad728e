import type { ImageRecord, Logger, MetadataStore } from '@peerglance/interface'
import { siteState, withSite } from './sites.ts'

/** How this agent holds images for its site: fetched through the mesh, kept from eviction. */
export interface SiteHolder {
  /** Fetches the whole image here, from peers, verifying and keeping every chunk. */
  fetch (imageId: string, signal: AbortSignal): Promise<void>
  /**
   * Keeps the image here whatever the cache needs (a pin of the site's, remembered across
   * restarts), or lets the cache evict it again.
   */
  keep (imageId: string, kept: boolean): void
  /** The images kept for the site, as remembered since before the agent (re)started. */
  kept (): Iterable<string>
  /** Drops the copy here, unless it is among the mesh's last. */
  drop (imageId: string): Promise<void>
}

const ATTEMPTS = 3
const RETRY_MS = 2_000
/** Whole-image fetches at once: a copy-image of many images must not open them all together. */
const PARALLEL_FETCHES = 2

/**
 * An agent's part in placing images on its site: when an active image names this agent's site
 * `importing` (an import or copy-image to it), fetch it whole through the mesh, keep it, and
 * report the site `active`; when the site is dropped from the image (`DELETE /v2/stores/...`),
 * stop keeping it and drop the copy. Every agent of the site fetches: the site is where its
 * hypervisors boot from. Only bytes move, from peers, each chunk checked against its CID: no
 * agent ever fetches from a URL because another agent said so.
 */
export class SiteCopies {
  readonly #metadata: MetadataStore
  readonly #holder: SiteHolder
  readonly #log: Logger | undefined
  readonly #site: string
  readonly #fetching = new Map<string, AbortController>()
  /** Images kept here for the site (the holder remembers them across restarts). */
  readonly #kept = new Set<string>()
  /** Fetches waiting for a slot. */
  readonly #waiting: Array<() => void> = []
  #active = 0
  #running = false

  constructor (components: { metadata: MetadataStore, holder: SiteHolder, logger?: Logger }, init: { site: string }) {
    this.#metadata = components.metadata
    this.#holder = components.holder
    this.#log = components.logger
    this.#site = init.site
  }

  /**
   * Picks up what changed while the agent was down: placements on its site are fetched, and
   * copies kept for the site are let go if the site was dropped from the image (or the image
   * deleted) meanwhile.
   */
  async start (): Promise<void> {
    this.#running = true
    for (const id of this.#holder.kept()) this.#kept.add(id)
    for (const image of [...this.#metadata.images()]) this.imageChanged(image)
    // Kept for an image this agent has no record of at all (its metadata was reset): nothing to keep it for.
    for (const id of [...this.#kept]) {
      if (this.#metadata.getImage(id) != null) continue
      this.#kept.delete(id)
      this.#holder.keep(id, false)
    }
  }

  async stop (): Promise<void> {
    this.#running = false
    for (const abort of this.#fetching.values()) abort.abort()
    this.#fetching.clear()
  }

  imageChanged (image: ImageRecord): void {
    if (!this.#running) return
    const state = image.status === 'deleted' ? undefined : siteState(image, this.#site)
    if (state === 'importing' && image.status === 'active') {
      if (!this.#fetching.has(image.id)) void this.#fetch(image.id)
      return
    }
    if (state != null) return
    this.#fetching.get(image.id)?.abort()
    if (!this.#kept.delete(image.id)) return
    this.#holder.keep(image.id, false)
    if (image.status !== 'deleted') {
      void this.#holder.drop(image.id).catch(err => { this.#log?.info({ imageId: image.id, reason: (err as Error).message }, 'kept a copy the site no longer holds') })
    }
  }

  async #fetch (imageId: string): Promise<void> {
    const abort = new AbortController()
    this.#fetching.set(imageId, abort)
    try {
      await this.#slot(abort.signal)
    } catch {
      this.#fetching.delete(imageId)
      return
    }
    const started = Date.now()
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          this.#holder.keep(imageId, true)
          this.#kept.add(imageId)
          await this.#holder.fetch(imageId, abort.signal)
          break
        } catch (err) {
          if (abort.signal.aborted || attempt >= ATTEMPTS) throw err
          await new Promise(resolve => setTimeout(resolve, RETRY_MS * attempt))
        }
      }
      // Re-read: the site may have been dropped or the image deleted meanwhile.
      const current = this.#metadata.getImage(imageId)
      if (current?.status === 'active' && siteState(current, this.#site) === 'importing') {
        await this.#metadata.putImage(withSite(current, this.#site, 'active'))
      }
      this.#log?.info({ imageId, site: this.#site, ms: Date.now() - started }, 'image placed on this site')
    } catch (err) {
      // The importing agent's task marks the site failed if no agent of it reports in time.
      if (!abort.signal.aborted) this.#log?.warn({ imageId, site: this.#site, reason: (err as Error).message }, 'fetching an image for this site failed')
    } finally {
      this.#fetching.delete(imageId)
      this.#active--
      this.#waiting.shift()?.()
    }
  }

  /** Waits for one of the PARALLEL_FETCHES slots (rejects if aborted meanwhile). */
  async #slot (signal: AbortSignal): Promise<void> {
    if (this.#active < PARALLEL_FETCHES) {
      this.#active++
      return
    }
    await new Promise<void>((resolve, reject) => {
      const go = (): void => { signal.removeEventListener('abort', cancel); this.#active++; resolve() }
      const cancel = (): void => {
        const i = this.#waiting.indexOf(go)
        if (i >= 0) this.#waiting.splice(i, 1)
        reject(signal.reason)
      }
      this.#waiting.push(go)
      signal.addEventListener('abort', cancel, { once: true })
    })
  }
}
