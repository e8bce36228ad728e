import { ForbiddenError, ImageNotFoundError, ValidationError } from '@peerglance/interface'
import type { CacheClearTarget, Identity, ImageCache, ImageRecord, MetadataStore } from '@peerglance/interface'
import type { ImageService } from './image-service.ts'
import { imageTarget } from './policy.ts'
import type { CacheRule } from './policy.ts'

/** `GET /v2/cache`, as Glance's cached_images.py serializes it (times in epoch seconds). */
export interface CacheDocument {
  cached_images: Array<{ image_id: string, hits: number, last_accessed: number, last_modified: number, size: number }>
  queued_images: string[]
}

/**
 * Glance's image cache API (`/v2/cache`, API 2.14–2.16) over this agent's cache: listing what it
 * keeps, queueing an image for prefetch, dropping entries. Admin-only by default (cache_image,
 * cache_list, cache_delete), with the image's target when there is an image.
 */
export class CacheService {
  readonly #images: ImageService
  readonly #metadata: Pick<MetadataStore, 'getImage'>
  readonly #cache: ImageCache

  constructor (components: { images: ImageService, metadata: Pick<MetadataStore, 'getImage'>, cache: ImageCache }) {
    this.#images = components.images
    this.#metadata = components.metadata
    this.#cache = components.cache
  }

  async list (who: Identity): Promise<CacheDocument> {
    this.#enforce('cache_list', who)
    const { cached, queued } = await this.#cache.list()
    return {
      cached_images: cached.map(c => ({ image_id: c.imageId, hits: c.hits, last_accessed: c.lastAccessed / 1000, last_modified: c.lastModified / 1000, size: c.size })),
      queued_images: queued
    }
  }

  /** `PUT /v2/cache/{id}` (glance cached_images.py queue_image): find, authorize, active only. */
  queue (who: Identity, id: string): void {
    const image = this.#images.find(who, id)
    this.#enforce('cache_image', who, image)
    if (image.status !== 'active') throw new ValidationError('Only images with status active can be targeted for queueing')
    this.#cache.queue(id)
  }

  /** `DELETE /v2/cache/{id}`: 404 only when the image is gone and neither cached nor queued. */
  async remove (who: Identity, id: string): Promise<void> {
    const image = this.#metadata.getImage(id)
    this.#enforce('cache_delete', who, image != null && image.status !== 'deleted' ? image : undefined)
    if (image == null || image.status === 'deleted') {
      const { cached, queued } = await this.#cache.list()
      if (!cached.some(c => c.imageId === id) && !queued.includes(id)) throw new ImageNotFoundError(`No image found with ID ${id}`)
    }
    await this.#cache.remove(id)
  }

  async clear (who: Identity, target: CacheClearTarget): Promise<void> {
    this.#enforce('cache_delete', who)
    await this.#cache.clear(target)
  }

  #enforce (rule: CacheRule, who: Identity, image?: ImageRecord): void {
    const target = image == null ? { project_id: who.projectId ?? null } : imageTarget(who, image)
    if (!this.#images.policy.allows(rule, who, target)) throw new ForbiddenError(`You are not authorized to complete ${rule} action.`)
  }
}
