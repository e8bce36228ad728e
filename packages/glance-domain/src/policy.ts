import type { Identity, ImageRecord, MemberRecord } from '@peerglance/interface'

/**
 * Glance's default secure-RBAC rules (glance/policies/*, glance-api.md §19), as pure predicates.
 * "Cannot see" becomes 404 and "sees but may not act" 403; the service decides which to raise.
 */
export function isAdmin (who: Identity): boolean {
  return who.roles.includes('admin')
}

function hasRole (who: Identity, role: 'reader' | 'member'): boolean {
  // Each role implies the ones below it: admin > member > reader.
  if (isAdmin(who)) return true
  if (role === 'reader') return who.roles.includes('reader') || who.roles.includes('member')
  return who.roles.includes('member')
}

export function isOwner (who: Identity, image: ImageRecord): boolean {
  return who.projectId != null && image.owner === who.projectId
}

/** The caller's membership of a shared image, if any; membership only counts for `shared` images. */
export function membershipOf (who: Identity, image: ImageRecord, members: readonly MemberRecord[]): MemberRecord | undefined {
  if (image.visibility !== 'shared' || who.projectId == null) return undefined
  return members.find(m => m.member_id === who.projectId)
}

export function canSee (who: Identity, image: ImageRecord, members: readonly MemberRecord[]): boolean {
  if (image.status === 'deleted' || image.status === 'pending_delete') return false
  if (isAdmin(who)) return true
  if (!hasRole(who, 'reader')) return false
  if (isOwner(who, image)) return true
  if (image.visibility === 'public' || image.visibility === 'community') return true
  return membershipOf(who, image, members) != null
}

/** `download_image`: reading data needs the member role, not just reader. */
export function canDownload (who: Identity, image: ImageRecord, members: readonly MemberRecord[]): boolean {
  if (isAdmin(who)) return true
  return hasRole(who, 'member') && canSee(who, image, members)
}

/** `modify_image` and friends: admin, or a member of the owning project. */
export function canModify (who: Identity, image: ImageRecord): boolean {
  return isAdmin(who) || (hasRole(who, 'member') && isOwner(who, image))
}

export function canCreate (who: Identity, owner: string | null): boolean {
  return isAdmin(who) || (hasRole(who, 'member') && owner === who.projectId)
}

/** `communitize_image`; `publicize_image` is admin only. */
export function canSetVisibility (who: Identity, image: ImageRecord, visibility: string): boolean {
  if (visibility === 'public') return isAdmin(who)
  return isAdmin(who) || isOwner(who, image)
}

/** `modify_member`: only the member project itself (or admin) answers a share. */
export function canAnswerShare (who: Identity, memberId: string): boolean {
  return isAdmin(who) || (hasRole(who, 'member') && who.projectId === memberId)
}
