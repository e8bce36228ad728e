import {
  ConflictError, ForbiddenError, LimitExceededError, MEMBER_STATUSES, MemberNotFoundError, ValidationError
} from '@peerglance/interface'
import type { Identity, ImageRecord, MemberRecord, MemberStatus, MetadataStore } from '@peerglance/interface'
import type { ImageService } from './image-service.ts'
import { canAnswerShare, canModify, isAdmin, isOwner } from './policy.ts'
import { now } from './time.ts'

/** Image sharing between projects (glance/api/v2/image_members.py, glance-api.md §14). */
export class MemberService {
  readonly #images: ImageService
  readonly #metadata: MetadataStore

  constructor (components: { images: ImageService, metadata: MetadataStore }) {
    this.#images = components.images
    this.#metadata = components.metadata
  }

  list (who: Identity, imageId: string): MemberRecord[] {
    const image = this.#shared(who, imageId)
    const members = this.#metadata.members(imageId)
    if (isAdmin(who) || isOwner(who, image)) return members
    return members.filter(m => m.member_id === who.projectId)
  }

  /** Anything the caller may not see about a membership is a 404 here, never a 403. */
  get (who: Identity, imageId: string, memberId: string): MemberRecord {
    const image = this.#images.visible(who, imageId)
    const member = this.#metadata.members(imageId).find(m => m.member_id === memberId)
    const mayLook = isAdmin(who) || isOwner(who, image) || who.projectId === memberId
    if (image.visibility !== 'shared' || member == null || !mayLook) {
      throw new MemberNotFoundError(`Member ${memberId} not found`)
    }
    return member
  }

  async add (who: Identity, imageId: string, body: unknown): Promise<MemberRecord> {
    const memberId = (body as { member?: unknown } | null)?.member
    if (body == null || typeof body !== 'object' || Array.isArray(body) || typeof memberId !== 'string' || memberId === '') {
      throw new ValidationError('Member to be added not specified')
    }
    const image = this.#shared(who, imageId)
    if (!canModify(who, image)) throw new ForbiddenError('You are not authorized to complete add_member action.')
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
    const member = this.get(who, imageId, memberId)
    if (!canAnswerShare(who, memberId)) throw new ForbiddenError('You are not permitted to modify \'status\' on this image member.')
    const updated = { ...member, status: status as MemberStatus, updated_at: now() }
    await this.#metadata.putMember(updated)
    return updated
  }

  async remove (who: Identity, imageId: string, memberId: string): Promise<void> {
    const image = this.#shared(who, imageId)
    if (!canModify(who, image)) throw new ForbiddenError('You are not authorized to complete delete_member action.')
    if (!this.#metadata.members(imageId).some(m => m.member_id === memberId)) {
      throw new MemberNotFoundError(`Member ${memberId} not found`)
    }
    await this.#metadata.deleteMember(imageId, memberId)
  }

  #shared (who: Identity, imageId: string): ImageRecord {
    const image = this.#images.visible(who, imageId)
    if (image.visibility !== 'shared') throw new ForbiddenError('Only shared images have members.')
    return image
  }
}
