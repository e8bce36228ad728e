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
import { canCreate, canModify, canSee, canSetVisibility, isAdmin, isOwner, membershipOf } from './policy.ts'
import { BASE_PROPERTIES, READ_ONLY, SCHEMA_EXTRA_PROPERTIES, WRITABLE_BASE, isReserved } from './properties.ts'
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

  constructor (components: { metadata: MetadataStore, events?: ImageServiceEvents }, rules: GlanceRules) {
    this.#store = components.metadata
    this.#events = components.events ?? {}
    this.#rules = rules
    this.#schema = imageSchema(rules)
  }

  /** The image if the caller may see it; 404 otherwise, whether it is absent or hidden from them. */
  visible (who: Identity, id: string): ImageRecord {
    const image = this.#store.getImage(id)
    if (image == null || !canSee(who, image, this.#store.members(id))) {
      throw new ImageNotFoundError(`No image found with ID ${id}`)
    }
    return image
  }

  /** The image if the caller may change it: 404 when invisible, 403 when visible but not theirs. */
  modifiable (who: Identity, id: string, action = 'modify_image'): ImageRecord {
    const image = this.visible(who, id)
    if (!canModify(who, image)) throw new ForbiddenError(`You are not authorized to complete ${action} action.`)
    return image
  }

  async create (who: Identity, body: unknown): Promise<ImageRecord> {
    if (body == null || typeof body !== 'object' || Array.isArray(body)) {
      throw new ValidationError('Body expected in request.')
    }
    const input = body as Record<string, unknown>
    for (const key of ['direct_url', 'self', 'file', 'schema', 'stores']) {
      if (key in input) throw new ReadOnlyPropertyError(key)
    }
    if ('id' in input) check('image', input.id, this.#schema.properties.id)
    for (const [key, value] of Object.entries(input)) this.#checkValue(key, value)
    for (const key of Object.keys(input)) {
      if (isReserved(key)) throw new ReservedPropertyError(key)
      if (READ_ONLY.has(key) && key !== 'id') throw new ReadOnlyPropertyError(key)
    }
    const owner = input.owner === undefined ? who.projectId : input.owner as string | null
    if (!canCreate(who, owner)) {
      throw new ForbiddenError(owner !== who.projectId
        ? `You are not permitted to create images owned by '${String(owner)}'.`
        : 'You are not authorized to complete add_image action.')
    }
    const visibility = (input.visibility as ImageRecord['visibility'] | undefined) ?? 'shared'
    if (visibility === 'public' && !isAdmin(who)) throw new ForbiddenError('You are not authorized to complete publicize_image action.')
    if (visibility === 'community' && !isAdmin(who) && owner !== who.projectId) throw new ForbiddenError('You are not authorized to complete communitize_image action.')

    const properties: Record<string, string | null> = {}
    for (const [key, value] of Object.entries(input)) {
      if (!BASE_PROPERTIES.has(key)) properties[key] = value as string | null
    }
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
    return this.visible(who, id)
  }

  /** `GET /v2/images`: who sees what (glance-api.md §5.2), then filters, keyset paging and sort. */
  list (who: Identity, query: Query): ImagePage {
    const q = parseListQuery(query, this.#rules)
    const admin = isAdmin(who)
    const listable = (image: ImageRecord): boolean => {
      if (image.status === 'deleted' || image.status === 'killed' || image.status === 'pending_delete') return false
      if (image.os_hidden !== q.osHidden) return false
      if (q.visibility != null && q.visibility !== 'all' && image.visibility !== q.visibility) return false
      const own = isOwner(who, image)
      if (image.visibility === 'community' && q.visibility == null && !own) return false
      if (admin || own || image.visibility === 'public' || image.visibility === 'community') return true
      const membership = membershipOf(who, image, this.#store.members(image.id))
      return membership != null && (q.memberStatus === 'all' || membership.status === q.memberStatus)
    }
    const order = compareBy(q.sort)
    let images = [...this.#store.images()].filter(i => listable(i) && q.filters.every(f => f(i))).sort(order)
    if (q.marker != null) {
      const marker = this.#store.getImage(q.marker)
      if (marker == null || !canSee(who, marker, this.#store.members(marker.id))) {
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
    let image = this.modifiable(who, id)
    for (const change of changes) image = this.#apply(who, image, change, dialect)
    if (changes.length === 0) return image
    this.#checkQuotas(image.properties, image.tags)
    // Re-read after validation so a concurrent writer's change is not overwritten by a stale copy.
    const current = this.modifiable(who, id)
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
    const exists = key in image.properties
    const properties = { ...image.properties }
    if (change.op === 'remove' || (change.op === 'replace' && !exists)) {
      if (!exists) throw new ConflictError(`Property ${key} does not exist.`)
      delete properties[key]
    } else {
      if (change.op === 'add' && dialect === '2.0' && exists) throw new ConflictError(`Property ${key} already present.`)
      this.#checkValue(key, change.value)
      properties[key] = change.value as string
    }
    return { ...image, properties }
  }

  #setBase (who: Identity, image: ImageRecord, key: string, value: unknown): ImageRecord {
    if (key === 'owner' && value !== image.owner && !isAdmin(who)) throw new ForbiddenError('You are not permitted to modify \'owner\' on this image.')
    if (key === 'visibility' && value !== image.visibility && !canSetVisibility(who, image, value as string)) {
      throw new ForbiddenError(`You are not authorized to complete ${value === 'public' ? 'publicize_image' : 'communitize_image'} action.`)
    }
    if ((key === 'disk_format' || key === 'container_format') && value !== image[key] && image.status !== 'queued' && image.status !== 'importing') {
      throw new ForbiddenError(`Attribute ${key} can be only replaced for a queued image.`)
    }
    if (key === 'tags') return { ...image, tags: [...new Set(value as string[])] }
    return { ...image, [key]: value }
  }

  /** Validates one attribute against the image schema, with Glance's extra checks (§3.1, §7.2). */
  #checkValue (key: string, value: unknown): void {
    if (key.length > 255) throw new ValidationError(`Property name '${key.slice(0, 20)}...' is too long (maximum is 255 characters).`)
    const schema = this.#schema.properties[key] ?? (BASE_PROPERTIES.has(key) ? undefined : this.#schema.additionalProperties)
    if (schema != null && !READ_ONLY.has(key)) check('image', { [key]: value }[key], schema)
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
    const image = this.modifiable(who, id, 'delete_image')
    if (image.protected) throw new ImageProtectedError(id)
    const deleted = transition(image, 'deleted')
    await this.#store.putImage(deleted)
    await this.#events.imageDeleted?.(deleted)
  }

  async deactivate (who: Identity, id: string): Promise<void> {
    const image = this.modifiable(who, id, 'deactivate')
    if (image.status === 'deactivated') return
    if (image.status !== 'active') throw new ForbiddenError(`Not allowed to deactivate image in status '${image.status}'`)
    await this.#store.putImage(transition(image, 'deactivated'))
  }

  async reactivate (who: Identity, id: string): Promise<void> {
    const image = this.modifiable(who, id, 'reactivate')
    if (image.status === 'active') return
    if (image.status !== 'deactivated') throw new ForbiddenError(`Not allowed to reactivate image in status '${image.status}'`)
    await this.#store.putImage(transition(image, 'active'))
  }

  async addTag (who: Identity, id: string, tag: string): Promise<void> {
    const image = this.modifiable(who, id)
    check('image', tag, this.#schema.properties.tags.items)
    if (image.tags.includes(tag)) return
    const tags = [...image.tags, tag]
    this.#checkQuotas({}, tags)
    await this.#store.putImage({ ...image, tags, updated_at: now() })
  }

  async deleteTag (who: Identity, id: string, tag: string): Promise<void> {
    const image = this.modifiable(who, id)
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
