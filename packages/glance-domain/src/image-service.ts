import { randomUUID } from 'node:crypto'
import {
  ConflictError, ForbiddenError, ImageNotFoundError, ImageProtectedError, LimitExceededError,
  NotFoundError, ReadOnlyPropertyError, ReservedPropertyError, ValidationError
} from '@peerglance/interface'
import type { Identity, ImageRecord, MetadataStore } from '@peerglance/interface'
import { compareBy, parseListQuery } from './list-query.ts'
import type { Query } from './list-query.ts'
import { parsePatch } from './patch.ts'
import type { PatchChange, PatchDialect } from './patch.ts'
import type { GlancePolicy, ImageRule } from './policy.ts'
import { BASE_PROPERTIES, READ_ONLY, SCHEMA_EXTRA_PROPERTIES, WRITABLE_BASE, isReserved, propertyRefusal } from './properties.ts'
import type { GlanceRules } from './rules.ts'
import { imageSchema } from './schemas.ts'
import { transition } from './status.ts'
import { now } from './time.ts'
import { check } from './validate.ts'

export interface ImagePage {
  images: ImageRecord[]
  /** The id to pass as `marker` for the next page, when this page is full. */
  nextMarker?: string
}

/** Hooks that let the data side react to metadata events without the service knowing it. */
export interface ImageServiceEvents {
  imageDeleted?: (image: ImageRecord) => Promise<void>
}

/**
 * The Glance use cases on image records: create, list, show, update, delete, tags and the
 * deactivate/reactivate actions. Every method takes the caller and throws domain errors.
 */
export class ImageService {
  readonly #store: MetadataStore
  readonly #rules: GlanceRules
  readonly #events: ImageServiceEvents
  readonly #schema: Record<string, any>
  readonly policy: GlancePolicy

  constructor (components: { metadata: MetadataStore, policy: GlancePolicy, events?: ImageServiceEvents }, rules: GlanceRules) {
    this.#store = components.metadata
    this.#events = components.events ?? {}
    this.policy = components.policy
    this.#rules = rules
    this.#schema = imageSchema(rules)
  }

  /** The image if the caller can find it at all; 404 otherwise, whether it is absent or hidden. */
  find (who: Identity, id: string): ImageRecord {
    const image = this.#store.getImage(id)
    if (image == null || !this.policy.canFind(who, image, this.#store.members(id))) {
      throw new ImageNotFoundError(`No image found with ID ${id}`)
    }
    return image
  }

  /** The image if `rule` allows the caller on it: 404 when they may not see it, 403 otherwise. */
  authorized (who: Identity, id: string, rule: ImageRule): ImageRecord {
    const image = this.find(who, id)
    this.policy.enforce(rule, who, image)
    return image
  }

  async create (who: Identity, body: unknown): Promise<ImageRecord> {
    if (body == null || typeof body !== 'object' || Array.isArray(body)) {
      throw new ValidationError('Body expected in request.')
    }
    const input = body as Record<string, unknown>
    for (const key of ['direct_url', 'self', 'file', 'schema', 'stores']) {
      if (Object.hasOwn(input, key)) throw new ReadOnlyPropertyError(key)
    }
    if (Object.hasOwn(input, 'id')) check('image', input.id, this.#schema.properties.id)
    for (const [key, value] of Object.entries(input)) this.#checkValue(key, value)
    for (const key of Object.keys(input)) {
      if (isReserved(key)) throw new ReservedPropertyError(key)
      if (READ_ONLY.has(key) && key !== 'id') throw new ReadOnlyPropertyError(key)
    }
    const owner = input.owner === undefined ? who.projectId : input.owner as string | null
    this.policy.enforceCreate(who, { owner, visibility: input.visibility as string | undefined })
    const visibility = (input.visibility as ImageRecord['visibility'] | undefined) ?? 'shared'

    // fromEntries defines each key as its own property, so even `__proto__` is just a name.
    const properties = Object.fromEntries(Object.entries(input).filter(([key]) => !BASE_PROPERTIES.has(key))) as Record<string, string | null>
    const tags = [...new Set((input.tags as string[] | undefined) ?? [])]
    this.#checkQuotas(properties, tags)

    const id = (input.id as string | undefined) ?? randomUUID()
    if (this.#store.getImage(id) != null) throw new ConflictError(`Image with identifier ${id} already exists!`)
    const at = now()
    const image: ImageRecord = {
      id,
      name: (input.name as string | null | undefined) ?? null,
      status: 'queued',
      visibility,
      protected: (input.protected as boolean | undefined) ?? false,
      os_hidden: (input.os_hidden as boolean | undefined) ?? false,
      owner,
      checksum: null,
      os_hash_algo: null,
      os_hash_value: null,
      size: null,
      virtual_size: null,
      container_format: (input.container_format as string | null | undefined) ?? null,
      disk_format: (input.disk_format as string | null | undefined) ?? null,
      min_ram: (input.min_ram as number | undefined) ?? 0,
      min_disk: (input.min_disk as number | undefined) ?? 0,
      tags,
      created_at: at,
      updated_at: at,
      properties
    }
    await this.#store.putImage(image)
    return image
  }

  get (who: Identity, id: string): ImageRecord {
    return this.authorized(who, id, 'get_image')
  }

  /** `GET /v2/images`: who sees what (glance-api.md §5.2), then filters, keyset paging and sort. */
  list (who: Identity, query: Query): ImagePage {
    const q = parseListQuery(query, this.#rules)
    this.policy.enforceList(who)
    const admin = this.policy.isAdmin(who)
    // Which images the database would return (glance/db/sqlalchemy/api.py _select_images_query).
    const listable = (image: ImageRecord): boolean => {
      if (image.status === 'deleted' || image.status === 'killed' || image.status === 'pending_delete') return false
      if (image.os_hidden !== q.osHidden) return false
      if (q.visibility != null && q.visibility !== 'all' && image.visibility !== q.visibility) return false
      const own = who.projectId != null && image.owner === who.projectId
      if (image.visibility === 'community' && q.visibility == null && !own) return false
      if (admin || own || image.visibility === 'public' || image.visibility === 'community') return true
      if (image.visibility !== 'shared' || who.projectId == null) return false
      const membership = this.#store.members(image.id).find(m => m.member_id === who.projectId)
      return membership != null && (q.memberStatus === 'all' || membership.status === q.memberStatus)
    }
    const order = compareBy(q.sort)
    let images = [...this.#store.images()].filter(i => listable(i) && q.filters.every(f => f(i)) && this.policy.permits('get_image', who, i)).sort(order)
    if (q.marker != null) {
      const marker = this.#store.getImage(q.marker)
      if (marker == null || !this.policy.canFind(who, marker, this.#store.members(marker.id)) || !this.policy.permits('get_image', who, marker)) {
        throw new ValidationError(`marker ${q.marker} could not be found.`)
      }
      images = images.filter(i => order(i, marker) > 0)
    }
    const page = images.slice(0, q.limit)
    return page.length === q.limit && q.limit > 0 ? { images: page, nextMarker: page[page.length - 1].id } : { images: page }
  }

  /** JSON-patch update (glance-api.md §7): validated whole, applied in order, saved once. */
  async update (who: Identity, id: string, body: unknown, dialect: PatchDialect): Promise<ImageRecord> {
    const changes = parsePatch(body, dialect)
    let image = this.find(who, id)
    // Glance checks no rule for an empty patch; seeing the image is the least it takes here.
    if (changes.length === 0) this.policy.enforce('get_image', who, image)
    for (const change of changes) {
      // Each change is authorized, then applied, in order (glance/api/v2/images.py update).
      if (change.path === '/visibility' && change.op !== 'remove') this.policy.enforceVisibility(who, image, change.value)
      this.policy.enforce('modify_image', who, image)
      image = this.#apply(who, image, change, dialect)
    }
    if (changes.length === 0) return image
    this.#checkQuotas(image.properties, image.tags)
    // Re-read after validation so a concurrent writer's change is not overwritten by a stale copy.
    const current = this.authorized(who, id, 'modify_image')
    const updated = { ...image, status: current.status, size: current.size, virtual_size: current.virtual_size, checksum: current.checksum, os_hash_algo: current.os_hash_algo, os_hash_value: current.os_hash_value, updated_at: now() }
    await this.#store.putImage(updated)
    return updated
  }

  #apply (who: Identity, image: ImageRecord, change: PatchChange, dialect: PatchDialect): ImageRecord {
    const key = change.path.slice(1)
    if (WRITABLE_BASE.has(key)) {
      if (change.op === 'remove') throw new ForbiddenError(`Property '${key}' may not be removed.`)
      if (change.op === 'add' && dialect === '2.0') throw new ConflictError(`Property ${key} already present.`)
      this.#checkValue(key, change.value)
      return this.#setBase(who, image, key, change.value)
    }
    // Own keys only: `toString` or `__proto__` is no more a property than any other absent name.
    const exists = Object.hasOwn(image.properties, key)
    if (change.op === 'remove' || (change.op === 'replace' && !exists)) {
      if (!exists) throw new ConflictError(`Property ${key} does not exist.`)
      const { [key]: _, ...properties } = image.properties
      return { ...image, properties }
    }
    if (change.op === 'add' && dialect === '2.0' && exists) throw new ConflictError(`Property ${key} already present.`)
    this.#checkValue(key, change.value)
    // A computed key in a literal defines an own property, never the prototype.
    return { ...image, properties: { ...image.properties, [key]: change.value as string } }
  }

  #setBase (who: Identity, image: ImageRecord, key: string, value: unknown): ImageRecord {
    if (key === 'owner' && value !== image.owner && !this.policy.isAdmin(who)) throw new ForbiddenError('You are not permitted to modify \'owner\' on this image.')
    if ((key === 'disk_format' || key === 'container_format') && value !== image[key] && image.status !== 'queued' && image.status !== 'importing') {
      throw new ForbiddenError(`Attribute ${key} can be only replaced for a queued image.`)
    }
    if (key === 'tags') return { ...image, tags: [...new Set(value as string[])] }
    return { ...image, [key]: value }
  }

  /** Validates one attribute against the image schema, with Glance's extra checks (§3.1, §7.2). */
  #checkValue (key: string, value: unknown): void {
    const refusal = propertyRefusal(key, value)
    if (refusal != null) throw new ValidationError(refusal)
    const schema = Object.hasOwn(this.#schema.properties, key) ? this.#schema.properties[key] : BASE_PROPERTIES.has(key) ? undefined : this.#schema.additionalProperties
    if (schema != null && !READ_ONLY.has(key)) check('image', value, schema)
    if ((key === 'min_ram' || key === 'min_disk') && typeof value === 'number' && value < 0) {
      throw new ValidationError(`Invalid value '${value}' for parameter '${key}': Cannot be a negative value.`)
    }
  }

  #checkQuotas (properties: Record<string, unknown>, tags: readonly string[]): void {
    const counted = Object.keys(properties).filter(k => !k.startsWith('os_glance')).length
    const { imagePropertyQuota: maxProps, imageTagQuota: maxTags } = this.#rules
    if (maxProps >= 0 && counted > maxProps) {
      throw new LimitExceededError(`The limit has been exceeded on the number of allowed image properties. Attempted: ${counted}, Maximum: ${maxProps}`)
    }
    if (maxTags >= 0 && tags.length > maxTags) {
      throw new LimitExceededError(`The limit has been exceeded on the number of allowed image tags. Attempted: ${tags.length}, Maximum: ${maxTags}`)
    }
  }

  async delete (who: Identity, id: string): Promise<void> {
    const image = this.authorized(who, id, 'delete_image')
    if (image.protected) throw new ImageProtectedError(id)
    await this.deleteUnchecked(image)
  }

  /**
   * Deletes an image that no caller asked to delete, so no policy applies: the cloud's own
   * decision (the upstream mirror's, when the upstream no longer has it). Its data goes too.
   */
  async deleteUnchecked (image: ImageRecord): Promise<void> {
    const deleted = transition(image, 'deleted')
    await this.#store.putImage(deleted)
    await this.#events.imageDeleted?.(deleted)
  }

  async deactivate (who: Identity, id: string): Promise<void> {
    const image = this.authorized(who, id, 'deactivate')
    if (image.status === 'deactivated') return
    if (image.status !== 'active') throw new ForbiddenError(`Not allowed to deactivate image in status '${image.status}'`)
    await this.#store.putImage(transition(image, 'deactivated'))
  }

  async reactivate (who: Identity, id: string): Promise<void> {
    const image = this.authorized(who, id, 'reactivate')
    if (image.status === 'active') return
    if (image.status !== 'deactivated') throw new ForbiddenError(`Not allowed to reactivate image in status '${image.status}'`)
    await this.#store.putImage(transition(image, 'active'))
  }

  async addTag (who: Identity, id: string, tag: string): Promise<void> {
    const image = this.authorized(who, id, 'modify_image')
    check('image', tag, this.#schema.properties.tags.items)
    if (image.tags.includes(tag)) return
    const tags = [...image.tags, tag]
    this.#checkQuotas({}, tags)
    await this.#store.putImage({ ...image, tags, updated_at: now() })
  }

  async deleteTag (who: Identity, id: string, tag: string): Promise<void> {
    const image = this.authorized(who, id, 'modify_image')
    if (!image.tags.includes(tag)) throw new NotFoundError(`Tag ${tag} not found`)
    await this.#store.putImage({ ...image, tags: image.tags.filter(t => t !== tag), updated_at: now() })
  }

  /** Bytes the owner's images hold, for `user_storage_quota` and `/v2/info/usage`. */
  usage (owner: string | null): { bytes: number, images: number, uploading: number } {
    let bytes = 0; let images = 0; let uploading = 0
    for (const image of this.#store.images()) {
      if (image.owner !== owner || image.status === 'deleted') continue
      images++
      bytes += image.size ?? 0
      if (['saving', 'uploading', 'importing'].includes(image.status)) uploading++
    }
    return { bytes, images, uploading }
  }

  get rules (): GlanceRules { return this.#rules }
}
