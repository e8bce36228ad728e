import { ConflictError, ForbiddenError, NotFoundError } from '@peerglance/interface'
import type { Identity, MetadataStore } from '@peerglance/interface'
import type { ImageService } from './image-service.ts'
import { imageTarget } from './policy.ts'
import { siteState, siteStates, withSite } from './sites.ts'
import type { SiteDirectory } from './sites.ts'

/**
 * Glance's multi-store API with sites as stores: `GET /v2/info/stores` (glance/api/v2/discovery.py)
 * and `DELETE /v2/stores/{store}/{image}` (images.py delete_from_store).
 */
export class StoreService {
  readonly #images: ImageService
  readonly #metadata: MetadataStore
  readonly #sites: SiteDirectory

  constructor (components: { images: ImageService, metadata: MetadataStore, sites: SiteDirectory }) {
    this.#images = components.images
    this.#metadata = components.metadata
    this.#sites = components.sites
  }

  /** Every site is a writable store; this agent's own is the default, where imports without `stores` go. */
  list (): { stores: Array<Record<string, string>> } {
    return {
      stores: this.#sites.known().map((id): Record<string, string> => id === this.#sites.own
        ? { id, description: `peerglance site ${id} (this agent's)`, default: 'true' }
        : { id, description: `peerglance site ${id}` })
    }
  }

  /** `GET /v2/info/stores/detail`: admins only (stores_info_detail). */
  detail (who: Identity): { stores: Array<Record<string, unknown>> } {
    if (!this.#images.policy.allows('stores_info_detail', who, { project_id: who.projectId ?? null })) {
      throw new ForbiddenError('You are not authorized to complete stores_info_detail action.')
    }
    return { stores: this.list().stores.map(store => ({ ...store, type: 'peerglance', weight: 0, properties: {} })) }
  }

  async deleteFrom (who: Identity, site: string, id: string): Promise<void> {
    if (!this.#sites.known().includes(site)) throw new ConflictError(`The selected store ${site} is not available on this node.`)
    const image = this.#images.find(who, id)
    this.#images.policy.enforce('get_image_location', who, image)
    if (!this.#images.policy.allows('delete_image_location', who, imageTarget(who, image))) {
      throw new ForbiddenError('You are not authorized to complete delete_image_location action.')
    }
    if (image.status !== 'active') throw new ConflictError('It\'s not allowed to remove image data from store if image status is not \'active\'')
    const holding = [...siteStates(image)].filter(([, state]) => state === 'active')
    if (holding.length === 1 && holding[0][0] === site) {
      throw new ForbiddenError('Cannot delete image data from the only store containing it. Consider deleting the image instead.')
    }
    if (siteState(image, site) !== 'active') throw new NotFoundError(`Image ${id} is not stored in store ${site}.`)
    // The agents of that site see their site dropped from the image and let their copies go (SiteCopies).
    await this.#metadata.putImage(withSite(image, site, undefined))
  }
}
