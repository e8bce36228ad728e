import { describe, expect, it } from 'vitest'
import type { Identity, ImageRecord, MemberRecord } from '@peerglance/interface'
import { GLANCE_RULES, GlancePolicy, imageTarget, scopeTypesOf } from '../src/policy.ts'
import type { ImageRule } from '../src/policy.ts'
import { evaluate, parseRule } from '../src/policy-language.ts'
import type { Credentials, Target } from '../src/policy-language.ts'

function image (over: Partial<ImageRecord> = {}): ImageRecord {
  return {
    id: '11111111-1111-1111-1111-111111111111', name: 'x', status: 'active', visibility: 'private', protected: false, os_hidden: false,
    owner: 'alice', checksum: null, os_hash_algo: null, os_hash_value: null, size: 10, virtual_size: null,
    container_format: 'bare', disk_format: 'raw', min_ram: 0, min_disk: 0, tags: [], created_at: '2026-01-01T00:00:00Z',
    updated_at: '2026-01-01T00:00:00Z', properties: {}, ...over
  }
}
const who = (projectId: string | null, ...roles: string[]): Identity => ({ projectId, userId: `${projectId ?? 'none'}-user`, roles })
const member = (memberId: string, status: MemberRecord['status'] = 'accepted'): MemberRecord =>
  ({ image_id: image().id, member_id: memberId, status, created_at: '', updated_at: '' })

/** Evaluates one check string with no other rules defined. */
function holds (rule: string, creds: Credentials, target: Target = {}): boolean {
  return evaluate(parseRule(rule), creds, target, () => undefined)
}

describe('oslo.policy language', () => {
  const alice = { roles: ['member'], project_id: 'alice', is_admin: false }

  it('knows @, !, the empty rule and role: (case-insensitive)', () => {
    expect(holds('@', {})).toBe(true)
    expect(holds('!', { roles: ['admin'] })).toBe(false)
    expect(holds('', {})).toBe(true)
    expect(holds('role:MEMBER', alice)).toBe(true)
    expect(holds('role:admin', alice)).toBe(false)
  })

  it('binds and tighter than or, and not tighter than both', () => {
    expect(holds('role:admin or role:member and project_id:%(project_id)s', alice, { project_id: 'bob' })).toBe(false)
    expect(holds('(role:admin or role:member) and project_id:%(project_id)s', alice, { project_id: 'alice' })).toBe(true)
    expect(holds('not role:admin and role:member', alice)).toBe(true)
    expect(holds('not (role:admin or role:member)', alice)).toBe(false)
    expect(holds('role:member AND NOT project_id:%(project_id)s', alice, { project_id: 'alice' })).toBe(false)
    expect(holds('((role:member))', alice)).toBe(true)
  })

  it('substitutes %(key)s from the target and compares with credentials or a literal', () => {
    expect(holds('project_id:%(owner)s', alice, { owner: 'alice' })).toBe(true)
    expect(holds('project_id:%(owner)s', alice, { owner: 'bob' })).toBe(false)
    expect(holds("'public':%(visibility)s", alice, { visibility: 'public' })).toBe(true)
    expect(holds("'public':%(visibility)s", alice, { visibility: 'private' })).toBe(false)
    expect(holds('is_admin:True', { is_admin: true })).toBe(true)
    expect(holds('is_admin:True', alice)).toBe(false)
    expect(holds("'False':%(protected)s", alice, { protected: false })).toBe(true)
    expect(holds('role:%(wanted)s', alice, { wanted: 'member' })).toBe(true)
  })

  it('fails closed on an absent or null target value, an unknown rule and an unknown credential', () => {
    expect(holds('project_id:%(member_id)s', { project_id: null }, { member_id: null })).toBe(false)
    expect(holds('project_id:%(nothing)s', alice, {})).toBe(false)
    expect(holds('rule:nowhere', alice)).toBe(false)
    expect(holds('domain_id:alice', alice)).toBe(false)
    // Only own keys of the target count: a rule cannot reach Object.prototype.
    expect(holds('project_id:%(constructor)s', { project_id: 'function Object() { [native code] }' }, {})).toBe(false)
  })

  it('follows dotted credential paths into lists', () => {
    expect(holds('token.roles.name:reader', { token: { roles: [{ name: 'member' }, { name: 'reader' }] } })).toBe(true)
    expect(holds('token.roles.name:admin', { token: { roles: [{ name: 'member' }] } })).toBe(false)
  })

  it.each(['role:admin or', '(role:admin', 'role:admin)', 'and role:admin', 'admin', 'role:a role:b', 'not'])('refuses to parse %j', (rule) => {
    expect(() => parseRule(rule)).toThrow(expect.objectContaining({ name: 'PolicySyntaxError' }))
  })

  it('refuses rules nested deep enough to exhaust the stack', () => {
    expect(() => parseRule(`${'('.repeat(10_000)}@${')'.repeat(10_000)}`)).toThrow(expect.objectContaining({ name: 'PolicySyntaxError' }))
    expect(() => parseRule(`${'not '.repeat(10_000)}@`)).toThrow(expect.objectContaining({ name: 'PolicySyntaxError' }))
  })
})

describe('Glance 25 secure-RBAC defaults', () => {
  const policy = new GlancePolicy()
  const ownerMember = who('alice', 'member', 'reader')
  const ownerReader = who('alice', 'reader')
  const bob = who('bob', 'member', 'reader')
  const admin = who('ops', 'admin')
  const can = (rule: ImageRule, caller: Identity, img: ImageRecord): boolean => policy.permits(rule, caller, img)

  it('lets the owner project read with reader and write with member; admins do everything', () => {
    for (const rule of ['modify_image', 'delete_image', 'upload_image', 'deactivate', 'reactivate', 'communitize_image', 'add_member', 'delete_member'] as const) {
      expect(can(rule, ownerMember, image()), rule).toBe(true)
      expect(can(rule, ownerReader, image()), rule).toBe(false)
      expect(can(rule, bob, image({ visibility: 'public' })), rule).toBe(false)
      expect(can(rule, admin, image()), rule).toBe(true)
    }
    expect(can('get_image', ownerReader, image())).toBe(true)
    expect(can('download_image', ownerReader, image())).toBe(false)
    expect(can('download_image', ownerMember, image())).toBe(true)
  })

  it('keeps publicize_image and copy_image for admins', () => {
    expect(can('publicize_image', ownerMember, image())).toBe(false)
    expect(can('publicize_image', admin, image())).toBe(true)
    expect(can('copy_image', ownerMember, image())).toBe(false)
  })

  it('lets other projects get and download public, community and (found) shared images, never private ones', () => {
    for (const visibility of ['public', 'community', 'shared'] as const) {
      expect(can('get_image', bob, image({ visibility })), visibility).toBe(true)
      expect(can('download_image', bob, image({ visibility })), visibility).toBe(true)
    }
    expect(can('get_image', bob, image())).toBe(false)
    expect(can('get_image', who('bob'), image({ visibility: 'public' }))).toBe(false)
  })

  it('lets only the member project answer a share, and the owner manage it', () => {
    const shared = image({ visibility: 'shared' })
    expect(can('modify_member', bob, shared)).toBe(true)
    expect(can('modify_member', ownerMember, shared)).toBe(false)
    expect(can('get_member', bob, shared)).toBe(true)
    expect(can('get_members', ownerReader, shared)).toBe(true)
    expect(can('add_member', bob, shared)).toBe(false)
  })

  it('treats the roles Keystone implies as held (admin > member > reader)', () => {
    expect(can('get_image', who('alice', 'member'), image())).toBe(true)
    expect(can('modify_image', who('elsewhere', 'admin'), image())).toBe(true)
  })

  it('lets a member create images for its own project only, with public for admins', () => {
    expect(() => { policy.enforceCreate(ownerMember, { owner: 'alice' }) }).not.toThrow()
    expect(() => { policy.enforceCreate(ownerMember, { owner: 'alice', visibility: 'community' }) }).not.toThrow()
    expect(() => { policy.enforceCreate(ownerMember, { owner: 'bob' }) }).toThrow("You are not permitted to create images owned by 'bob'.")
    expect(() => { policy.enforceCreate(ownerReader, { owner: 'alice' }) }).toThrow('add_image')
    expect(() => { policy.enforceCreate(ownerMember, { owner: 'alice', visibility: 'public' }) }).toThrow('publicize_image')
    expect(() => { policy.enforceCreate(admin, { owner: 'bob', visibility: 'public' }) }).not.toThrow()
  })

  it('refuses the list to a caller without roles', () => {
    expect(() => { policy.enforceList(who('alice')) }).toThrow(expect.objectContaining({ name: 'ForbiddenError' }))
    expect(() => { policy.enforceList(ownerReader) }).not.toThrow()
  })
})

describe('finding images and the 404/403 split', () => {
  const policy = new GlancePolicy()

  it('finds private images for the owner and admins only, shared ones for members in any status', () => {
    expect(policy.canFind(who('alice'), image(), [])).toBe(true)
    expect(policy.canFind(who('bob', 'member'), image(), [member('bob')])).toBe(false)
    expect(policy.canFind(who('x', 'admin'), image(), [])).toBe(true)
    for (const status of ['pending', 'accepted', 'rejected'] as const) {
      expect(policy.canFind(who('bob', 'member'), image({ visibility: 'shared' }), [member('bob', status)])).toBe(true)
    }
    expect(policy.canFind(who('carol', 'member'), image({ visibility: 'shared' }), [member('bob')])).toBe(false)
    expect(policy.canFind(who(null, 'member'), image({ visibility: 'shared' }), [member('bob')])).toBe(false)
  })

  it('hides deleted images from everyone, admins included', () => {
    expect(policy.canFind(who('x', 'admin'), image({ status: 'deleted' }), [])).toBe(false)
    expect(policy.canFind(who('alice', 'admin'), image({ status: 'pending_delete' }), [])).toBe(false)
  })

  it('answers 404 when the caller may not get_image, 403 when it may but not this', () => {
    expect(() => { policy.enforce('modify_image', who('bob', 'member'), image({ visibility: 'public' })) })
      .toThrow(expect.objectContaining({ name: 'ForbiddenError', message: 'You are not authorized to complete modify_image action.' }))
    expect(() => { policy.enforce('modify_image', who('alice'), image()) }).toThrow(expect.objectContaining({ name: 'ImageNotFoundError' }))
    expect(() => { policy.enforce('get_image', who('alice'), image()) }).toThrow(expect.objectContaining({ name: 'ImageNotFoundError' }))
    expect(() => { policy.enforce('download_image', who('alice', 'reader'), image()) }).toThrow(expect.objectContaining({ name: 'ForbiddenError' }))
  })

  it('shows a member project only its own membership', () => {
    const members = [member('bob'), member('carol', 'pending')]
    expect(policy.membershipsVisibleTo(who('bob', 'reader'), image({ visibility: 'shared' }), members)).toEqual([members[0]])
    expect(policy.membershipsVisibleTo(who('alice', 'reader'), image({ visibility: 'shared' }), members)).toEqual(members)
    expect(policy.membershipsVisibleTo(who('x', 'admin'), image({ visibility: 'shared' }), members)).toEqual(members)
  })

  it('gives rules the image fields, its extra properties, project_id and member_id', () => {
    const target = imageTarget(who('bob'), image({ visibility: 'shared', properties: { os_distro: 'cirros', owner: 'forged' } }))
    expect(target).toMatchObject({ project_id: 'alice', owner: 'alice', member_id: 'bob', os_distro: 'cirros', visibility: 'shared', protected: false })
    expect(imageTarget(who('alice'), image({ visibility: 'shared' })).member_id).toBeNull()
    expect(imageTarget(who('bob'), image()).member_id).toBeNull()
  })
})

describe('token scope (enforceScope, oslo.policy scope_types)', () => {
  const systemAdmin: Identity = { projectId: null, userId: 'cloud-admin', roles: ['admin'], systemScope: 'all' }
  const domainAdmin: Identity = { projectId: null, userId: 'domain-admin', roles: ['admin'], domainId: 'default' }
  const scoped = new GlancePolicy({ enforceScope: true })
  const ns = { owner: null, visibility: 'public' }

  it('scopes every rule Glance 25 registers to projects but the building blocks other rules refer to', () => {
    for (const name of Object.keys(GLANCE_RULES)) {
      expect(scopeTypesOf(name), name).toEqual(['default', 'context_is_admin', 'metadef_default', 'metadef_admin'].includes(name) ? undefined : ['project'])
    }
    expect(scopeTypesOf('an_operator_rule')).toBeUndefined()
    expect(scopeTypesOf('constructor')).toBeUndefined()
  })

  it('refuses system- and domain-scoped admins every scoped rule, as an admin still (context_is_admin has no scope)', () => {
    for (const caller of [systemAdmin, domainAdmin]) {
      expect(scoped.isAdmin(caller)).toBe(true)
      expect(scoped.canFind(caller, image(), [])).toBe(true)
      expect(() => { scoped.enforce('get_image', caller, image({ visibility: 'public' })) }).toThrow(expect.objectContaining({ name: 'ImageNotFoundError', message: 'The resource could not be found.' }))
      expect(() => { scoped.enforce('download_image', caller, image()) }).toThrow(expect.objectContaining({ name: 'ImageNotFoundError' }))
      expect(() => { scoped.enforceList(caller) }).toThrow(expect.objectContaining({ name: 'ForbiddenError', message: 'You are not authorized to complete get_images action.' }))
      expect(() => { scoped.enforceCreate(caller, { owner: null, visibility: 'public' }) }).toThrow(expect.objectContaining({ name: 'ForbiddenError', message: 'You are not authorized to complete add_image action.' }))
      expect(() => { scoped.enforceMetadef('get_metadef_namespaces', caller) }).toThrow(expect.objectContaining({ name: 'NotFoundError', message: 'The resource could not be found.' }))
      expect(scoped.allows('tasks_api_access', caller, {})).toBe(false)
      expect(scoped.allows('cache_list', caller, {})).toBe(false)
    }
  })

  it('changes nothing for project-scoped tokens', () => {
    expect(scoped.permits('modify_image', who('alice', 'member'), image())).toBe(true)
    expect(scoped.permits('publicize_image', who('x', 'admin'), image())).toBe(true)
    expect(() => { scoped.enforceMetadef('get_metadef_namespace', who('bob', 'reader'), ns) }).not.toThrow()
  })

  it('is off by default, as in Glance 25: a system-scoped admin is an admin everywhere', () => {
    const policy = new GlancePolicy()
    expect(policy.enforceScope).toBe(false)
    expect(policy.permits('get_image', systemAdmin, image())).toBe(true)
    expect(() => { policy.enforceList(systemAdmin) }).not.toThrow()
    expect(() => { policy.enforceCreate(systemAdmin, { owner: null }) }).not.toThrow()
  })

  it('leaves operator rules without scope types, and lets an override name system_scope', () => {
    const policy = new GlancePolicy({ enforceScope: true, rules: { get_images: 'system_scope:all', helper: 'role:admin' } })
    expect(policy.allows('helper', systemAdmin, {})).toBe(true)
    // get_images stays project-scoped (scope types come with the registered rule, not the check string).
    expect(policy.allows('get_images', systemAdmin, {})).toBe(false)
    expect(new GlancePolicy({ rules: { get_images: 'system_scope:all' } }).allows('get_images', systemAdmin, {})).toBe(true)
  })
})

describe('legacy defaults (enforceNewDefaults: false)', () => {
  const policy = new GlancePolicy({ enforceNewDefaults: false })

  it('lets any found image be read and downloaded whatever the roles', () => {
    expect(policy.permits('get_image', who('bob'), image({ visibility: 'public' }))).toBe(true)
    expect(policy.permits('download_image', who('bob'), image({ visibility: 'public' }))).toBe(true)
    expect(() => { policy.enforceList(who('bob')) }).not.toThrow()
  })

  it('still needs the owner (or an admin) to change an image, and an admin to publicize', () => {
    expect(() => { policy.enforce('modify_image', who('alice'), image()) }).not.toThrow()
    expect(() => { policy.enforce('modify_image', who('bob'), image({ visibility: 'public' })) }).toThrow('You do not own this image')
    expect(() => { policy.enforce('delete_image', who('x', 'admin'), image()) }).not.toThrow()
    expect(policy.permits('publicize_image', who('alice', 'member'), image())).toBe(false)
    expect(() => { policy.enforceCreate(who('alice'), { owner: 'bob' }) }).toThrow("owned by 'bob'")
  })
})

describe('operator overrides', () => {
  it('replace the named rules and keep the rest', () => {
    const policy = new GlancePolicy({ rules: { publicize_image: 'role:member and project_id:%(project_id)s', download_image: '!' } })
    expect(policy.permits('publicize_image', who('alice', 'member'), image())).toBe(true)
    expect(policy.permits('download_image', who('x', 'admin'), image())).toBe(false)
    expect(policy.permits('get_image', who('alice', 'reader'), image())).toBe(true)
  })

  it('can define helper rules and refer to them', () => {
    const policy = new GlancePolicy({ rules: { owner: 'project_id:%(project_id)s', modify_image: 'rule:owner and not rule:frozen', frozen: "'True':%(protected)s" } })
    expect(policy.permits('modify_image', who('alice'), image())).toBe(true)
    expect(policy.permits('modify_image', who('alice'), image({ protected: true }))).toBe(false)
  })

  it('decide who is admin through context_is_admin, which is_admin:True checks', () => {
    const policy = new GlancePolicy({ rules: { context_is_admin: 'role:cloud_admin', get_images: 'is_admin:True' } })
    expect(policy.isAdmin(who('x', 'admin'))).toBe(false)
    expect(policy.isAdmin(who('x', 'cloud_admin'))).toBe(true)
    expect(() => { policy.enforceList(who('x', 'cloud_admin')) }).not.toThrow()
    expect(() => { policy.enforceList(who('x', 'admin')) }).toThrow(expect.objectContaining({ name: 'ForbiddenError' }))
  })

  it('are refused at load when they do not parse or loop', () => {
    expect(() => new GlancePolicy({ rules: { get_image: 'role:admin or' } })).toThrow(/policy rule "get_image"/)
    expect(() => new GlancePolicy({ rules: { a: 'rule:b', b: 'rule:a', get_image: 'rule:a' } })).toThrow(/loop: .*a -> b -> a/)
  })

  it('every default parses', () => {
    for (const [name, rule] of Object.entries(GLANCE_RULES)) expect(() => parseRule(rule.check), name).not.toThrow()
  })
})
