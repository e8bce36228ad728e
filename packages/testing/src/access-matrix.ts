/*
 * What Glance 25 answers with its default (secure RBAC) policy, by image state and caller: the
 * expectations of the cross-project access matrix, shared by its noauth run (glance-api tests) and
 * its Keystone run (test/keystone). Project alpha owns every image; beta is the project it is
 * shared with; another project is anyone else.
 */
export type AccessCaller = 'ownerMember' | 'ownerReader' | 'memberProject' | 'otherProject' | 'admin'
export const ACCESS_STATES = ['private', 'sharedPending', 'sharedAccepted', 'sharedRejected', 'community', 'public'] as const
export type AccessState = typeof ACCESS_STATES[number]

/** [listed, show, download, update, delete, members] per caller. */
export type AccessRow = [boolean, number, number, number, number, number]
const OWNER_MEMBER_SHARED: AccessRow = [true, 200, 200, 200, 204, 200]
const OWNER_READER_SHARED: AccessRow = [true, 200, 403, 403, 403, 200]
const HIDDEN: AccessRow = [false, 404, 404, 404, 404, 404]
export const ACCESS_EXPECTED: Record<AccessState, Record<AccessCaller, AccessRow>> = {
  private: {
    ownerMember: [true, 200, 200, 200, 204, 403],
    ownerReader: [true, 200, 403, 403, 403, 403],
    memberProject: HIDDEN,
    otherProject: HIDDEN,
    admin: [true, 200, 200, 200, 204, 403]
  },
  // A member project sees and downloads a shared image whatever its member status (the database
  // layer finds it, download_image allows it); only the listing waits for `accepted`.
  sharedPending: {
    ownerMember: OWNER_MEMBER_SHARED,
    ownerReader: OWNER_READER_SHARED,
    memberProject: [false, 200, 200, 403, 403, 200],
    otherProject: HIDDEN,
    admin: OWNER_MEMBER_SHARED
  },
  sharedAccepted: {
    ownerMember: OWNER_MEMBER_SHARED,
    ownerReader: OWNER_READER_SHARED,
    memberProject: [true, 200, 200, 403, 403, 200],
    otherProject: HIDDEN,
    admin: OWNER_MEMBER_SHARED
  },
  sharedRejected: {
    ownerMember: OWNER_MEMBER_SHARED,
    ownerReader: OWNER_READER_SHARED,
    memberProject: [false, 200, 200, 403, 403, 200],
    otherProject: HIDDEN,
    admin: OWNER_MEMBER_SHARED
  },
  // Community images are listed by default only to their owner, admins included.
  community: {
    ownerMember: [true, 200, 200, 200, 204, 403],
    ownerReader: [true, 200, 403, 403, 403, 403],
    memberProject: [false, 200, 200, 403, 403, 403],
    otherProject: [false, 200, 200, 403, 403, 403],
    admin: [false, 200, 200, 200, 204, 403]
  },
  public: {
    ownerMember: [true, 200, 200, 200, 204, 403],
    ownerReader: [true, 200, 403, 403, 403, 403],
    memberProject: [true, 200, 200, 403, 403, 403],
    otherProject: [true, 200, 200, 403, 403, 403],
    admin: [true, 200, 200, 200, 204, 403]
  }
}

