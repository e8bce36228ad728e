import {
  ConflictError, ForbiddenError, LimitExceededError, MEMBER_STATUSES, MemberNotFoundError, ValidationError
} from '@peerglance/interface'
import type { Identity, ImageRecord, MemberRecord, MemberStatus, MetadataStore } from '@peerglance/interface'
import type { ImageService } from './image-service.ts'
import type { GlancePolicy } from './policy.ts'
import { now } from './time.ts'

type Ownership = 'create' | 'update' | 'delete' | undefined

/**
 * Image sharing between projects (glance/api/v2/image_members.py, glance-api.md §14). Every call
 * first finds the image (404), then refuses non-shared images (403), then asks the policy, which
 * answers 404 when the caller may not `get_image` and 403 otherwise.
 */
export class MemberService {
  readonly #images: ImageService
  readonly #metadata: MetadataStore
  readonly #policy: GlancePolicy

  constructor (components: { images: ImageService, metadata: MetadataStore }) {
    this.#images = components.images
    this.#metadata = components.metadata
    this.#policy = components.images.policy
  }

  list (who: Identity, imageId: string): MemberRecord[] {
    const image = this.#shared(who, imageId)
    this.#enforce('get_members', who, image)
    // get_member is checked against the image, so it keeps all the visible rows or none.
    if (!this.#policy.permits('get_member', who, image)) return []
    return this.#policy.membershipsVisibleTo(who, image, this.#metadata.members(imageId))
  }

  /** Anything the caller may not see about a membership is a 404 here, never a 403. */
  get (who: Identity, imageId: string, memberId: string): MemberRecord {
    try {
      return this.#lookup(who, this.#shared(who, imageId), memberId)
    } catch (err) {
      // Glance hides refusals here to avoid revealing memberships (image_members.py show).
      if ((err as Error).name === ForbiddenError.name) throw new MemberNotFoundError(`Member ${memberId} not found`)
      throw err
    }
  }

  async add (who: Identity, imageId: string, body: unknown): Promise<MemberRecord> {
    const memberId = (body as { member?: unknown } | null)?.member
    if (body == null || typeof body !== 'object' || Array.isArray(body) || typeof memberId !== 'string' || memberId === '') {
      throw new ValidationError('Member to be added not specified')
    }
    const image = this.#shared(who, imageId, 'create')
    this.#enforce('add_member', who, image)
    const members = this.#metadata.members(imageId)
    if (members.some(m => m.member_id === memberId)) {
      throw new ConflictError(`Member ${memberId} already associated with image ${imageId}`)
    }
    const quota = this.#images.rules.imageMemberQuota
    if (quota >= 0 && members.length + 1 > quota) {
      throw new LimitExceededError(`The limit has been exceeded on the number of allowed image members for this image. Attempted: ${members.length + 1}, Maximum: ${quota}`)
    }
    const at = now()
    const member: MemberRecord = { image_id: imageId, member_id: memberId, status: 'pending', created_at: at, updated_at: at }
    await this.#metadata.putMember(member)
    return member
  }

  async update (who: Identity, imageId: string, memberId: string, body: unknown): Promise<MemberRecord> {
    const status = (body as { status?: unknown } | null)?.status
    if (typeof status !== 'string' || !(MEMBER_STATUSES as readonly string[]).includes(status)) {
      throw new ValidationError(`Provided object does not match schema 'member': ${status === undefined ? '\'status\' is a required property' : `'${String(status)}' is not one of ['pending', 'accepted', 'rejected']`}`)
    }
    const image = this.#shared(who, imageId, 'update')
    const member = this.#lookup(who, image, memberId)
    this.#enforce('modify_member', who, image)
    const updated = { ...member, status: status as MemberStatus, updated_at: now() }
    await this.#metadata.putMember(updated)
    return updated
  }

  async remove (who: Identity, imageId: string, memberId: string): Promise<void> {
    const image = this.#shared(who, imageId, 'delete')
    this.#lookup(who, image, memberId)
    this.#enforce('delete_member', who, image)
    await this.#metadata.deleteMember(imageId, memberId)
  }

  /** The image, found by the caller and shared; in legacy mode, Glance's hard-coded owner checks. */
  #shared (who: Identity, imageId: string, ownership?: Ownership): ImageRecord {
    const image = this.#images.find(who, imageId)
    if (image.visibility !== 'shared') throw new ForbiddenError('Only shared images have members.')
    if (!this.#policy.enforceNewDefaults && ownership != null && !this.#policy.isAdmin(who)) {
      const owner = image.owner != null && image.owner === who.projectId
      if (ownership === 'create' && !owner) throw new ForbiddenError('You are not permitted to create image members for the image.')
      if (ownership === 'update' && owner) throw new ForbiddenError('You are not permitted to modify \'status\' on this image member.')
      if (ownership === 'delete' && !owner) throw new ForbiddenError('You cannot delete image member.')
    }
    return image
  }

  /** One membership the caller may know of, after `get_member` (image_members.py _lookup_member). */
  #lookup (who: Identity, image: ImageRecord, memberId: string): MemberRecord {
    this.#enforce('get_member', who, image)
    const member = this.#policy.membershipsVisibleTo(who, image, this.#metadata.members(image.id)).find(m => m.member_id === memberId)
    if (member == null) throw new MemberNotFoundError(`Member ${memberId} not found`)
    return member
  }

  /** Member rules are checked after `get_image`, so a hidden image stays a 404. */
  #enforce (rule: 'get_members' | 'get_member' | 'add_member' | 'modify_member' | 'delete_member', who: Identity, image: ImageRecord): void {
    this.#policy.enforce('get_image', who, image)
    this.#policy.enforce(rule, who, image)
  }
}
