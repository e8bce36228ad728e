import { ForbiddenError, ImageNotFoundError, NotFoundError } from '@peerglance/interface'
import type { Identity, ImageRecord, MemberRecord } from '@peerglance/interface'
import { PolicySyntaxError, evaluate, parseRule, referencedRules } from './policy-language.ts'
import type { Check, Credentials, Target } from './policy-language.ts'

export { PolicySyntaxError } from './policy-language.ts'

/*
 * Glance's access policy, as data: the rules Glance 25 registers (glance/policies/base.py and
 * image.py) in oslo.policy's language, then the few places where Glance's API and database layers
 * decide on their own (glance/api/v2/policy.py, glance/db/utils.py is_image_visible). An operator
 * overrides any rule by name; the services ask this module and nothing else.
 */

// The building blocks of glance/policies/base.py. Admin is one rule, context_is_admin, as Glance
// writes it since 2023.2 (Glance 25 spelled out role:admin: the same unless an operator overrides
// context_is_admin, and then the override should hold everywhere).
const ADMIN = 'rule:context_is_admin'
const PROJECT_MEMBER = 'role:member and project_id:%(project_id)s'
const PROJECT_READER = 'role:reader and project_id:%(project_id)s'
const IMAGE_MEMBER = 'project_id:%(member_id)s'
// `shared` is allowed here because the database layer has already hidden shared images from
// projects that are not members (`canFind` below).
const OWNER_OR_IMAGE_MEMBER_OR_NOT_PRIVATE = `project_id:%(project_id)s or ${IMAGE_MEMBER} or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s`
const ADMIN_OR_PROJECT_MEMBER = `${ADMIN} or (${PROJECT_MEMBER})`
const ADMIN_OR_PROJECT_READER = `${ADMIN} or (${PROJECT_READER})`
const ADMIN_OR_READER_OF_OWNER_OR_MEMBER = `${ADMIN} or role:reader and (project_id:%(project_id)s or ${IMAGE_MEMBER})`
// glance/policies/metadef.py: definitions are read by the owner project's readers and, when
// public, by every reader; only admins write them.
const ADMIN_OR_READER_GET_NAMESPACE = `${ADMIN} or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))`
const METADEF_ADMIN = 'rule:metadef_admin'
const METADEF_READ = { check: ADMIN_OR_READER_GET_NAMESPACE, legacy: 'rule:metadef_default' }
/** The legacy default of every rule below that has one: before 2021 the policy file was nearly empty. */
const LEGACY = 'rule:default'

/**
 * A registered rule: its secure-RBAC default and, for rules that had one, the legacy default that
 * `enforceNewDefaults: false` ORs with it (as oslo.policy does for a deprecated rule).
 */
export interface RuleDefault { check: string, legacy?: string }

export const GLANCE_RULES = {
  // '' allows everyone; its legacy 'role:admin' is ORed with it, so `rule:default` allows everyone
  // in both modes (glance/policies/base.py explains why).
  default: { check: '', legacy: 'role:admin' },
  context_is_admin: { check: 'role:admin' },
  add_image: { check: `${ADMIN} or (${PROJECT_MEMBER} and project_id:%(owner)s)`, legacy: LEGACY },
  get_image: { check: `${ADMIN} or (role:reader and (${OWNER_OR_IMAGE_MEMBER_OR_NOT_PRIVATE}))`, legacy: LEGACY },
  get_images: { check: ADMIN_OR_PROJECT_READER, legacy: LEGACY },
  modify_image: { check: ADMIN_OR_PROJECT_MEMBER, legacy: LEGACY },
  delete_image: { check: ADMIN_OR_PROJECT_MEMBER, legacy: LEGACY },
  upload_image: { check: ADMIN_OR_PROJECT_MEMBER, legacy: LEGACY },
  download_image: { check: `${ADMIN} or (role:member and (${OWNER_OR_IMAGE_MEMBER_OR_NOT_PRIVATE}))`, legacy: LEGACY },
  publicize_image: { check: ADMIN },
  communitize_image: { check: ADMIN_OR_PROJECT_MEMBER, legacy: LEGACY },
  deactivate: { check: ADMIN_OR_PROJECT_MEMBER, legacy: LEGACY },
  reactivate: { check: ADMIN_OR_PROJECT_MEMBER, legacy: LEGACY },
  copy_image: { check: ADMIN },
  get_image_location: { check: ADMIN_OR_PROJECT_READER, legacy: LEGACY },
  delete_image_location: { check: ADMIN, legacy: LEGACY },
  get_task: { check: LEGACY },
  get_tasks: { check: LEGACY },
  add_task: { check: LEGACY },
  tasks_api_access: { check: ADMIN },
  stores_info_detail: { check: ADMIN },
  add_member: { check: ADMIN_OR_PROJECT_MEMBER, legacy: LEGACY },
  delete_member: { check: ADMIN_OR_PROJECT_MEMBER, legacy: LEGACY },
  get_member: { check: ADMIN_OR_READER_OF_OWNER_OR_MEMBER, legacy: LEGACY },
  get_members: { check: ADMIN_OR_READER_OF_OWNER_OR_MEMBER, legacy: LEGACY },
  modify_member: { check: `${ADMIN} or (role:member and ${IMAGE_MEMBER})`, legacy: LEGACY },
  cache_image: { check: ADMIN },
  cache_list: { check: ADMIN },
  cache_delete: { check: ADMIN },
  metadef_default: { check: '' },
  metadef_admin: { check: ADMIN },
  get_metadef_namespace: METADEF_READ,
  get_metadef_namespaces: { check: ADMIN_OR_PROJECT_READER, legacy: 'rule:metadef_default' },
  modify_metadef_namespace: { check: METADEF_ADMIN },
  add_metadef_namespace: { check: METADEF_ADMIN },
  delete_metadef_namespace: { check: METADEF_ADMIN },
  get_metadef_object: METADEF_READ,
  get_metadef_objects: METADEF_READ,
  modify_metadef_object: { check: METADEF_ADMIN },
  add_metadef_object: { check: METADEF_ADMIN },
  delete_metadef_object: { check: METADEF_ADMIN },
  list_metadef_resource_types: METADEF_READ,
  get_metadef_resource_type: METADEF_READ,
  add_metadef_resource_type_association: { check: METADEF_ADMIN },
  remove_metadef_resource_type_association: { check: METADEF_ADMIN },
  get_metadef_property: METADEF_READ,
  get_metadef_properties: METADEF_READ,
  modify_metadef_property: { check: METADEF_ADMIN },
  add_metadef_property: { check: METADEF_ADMIN },
  remove_metadef_property: { check: METADEF_ADMIN },
  get_metadef_tag: METADEF_READ,
  get_metadef_tags: METADEF_READ,
  modify_metadef_tag: { check: METADEF_ADMIN },
  add_metadef_tag: { check: METADEF_ADMIN },
  add_metadef_tags: { check: METADEF_ADMIN },
  delete_metadef_tag: { check: METADEF_ADMIN },
  delete_metadef_tags: { check: METADEF_ADMIN }
} as const satisfies Record<string, RuleDefault>

export type RuleName = keyof typeof GLANCE_RULES

/** What a Keystone token is scoped to, as oslo.policy tells them apart. */
export type TokenScope = 'project' | 'domain' | 'system'

/**
 * oslo.policy's `scope_types`, as Glance 25 registers them (glance/policies/*.py): every rule is
 * for project-scoped tokens but the building blocks other rules refer to, which have none. With
 * `enforceScope`, a rule refuses a token of another scope whatever its check string says; a rule
 * it refers to is not scope-checked itself, and neither is `context_is_admin`, so a system-scoped
 * admin is still an admin to the database layer (it finds every image) and is then refused by the
 * rule: 404 for an image, 403 for a create or a listing, as Glance answers.
 */
const UNSCOPED_RULES: ReadonlySet<string> = new Set(['default', 'context_is_admin', 'metadef_default', 'metadef_admin'])
export function scopeTypesOf (rule: string): readonly TokenScope[] | undefined {
  return Object.hasOwn(GLANCE_RULES, rule) && !UNSCOPED_RULES.has(rule) ? ['project'] : undefined
}
/** The metadata definition API's rules (glance/policies/metadef.py), checked against a namespace. */
export type MetadefRule = Exclude<Extract<RuleName, `${string}metadef_${string}`>, 'metadef_default' | 'metadef_admin'>
/** Rules checked against an existing image. */
export type ImageRule = Exclude<RuleName, 'default' | 'context_is_admin' | 'add_image' | 'get_images' | CacheRule | MetadefRule | 'metadef_default' | 'metadef_admin' | ServiceRule>
/** Rules of the tasks API and store discovery (glance/policies/tasks.py, discovery.py), checked without an image. */
export type ServiceRule = 'get_task' | 'get_tasks' | 'add_task' | 'tasks_api_access' | 'stores_info_detail'
/** The image cache API's rules (glance/policies/cache.py), checked without an image. */
export type CacheRule = 'cache_image' | 'cache_list' | 'cache_delete'

/** Actions that, in legacy mode, also need the caller to own the image (check_is_image_mutable). */
const OWNER_ONLY_IN_LEGACY: ReadonlySet<ImageRule> = new Set(['modify_image', 'delete_image', 'upload_image', 'deactivate', 'reactivate'])

/**
 * Keystone's default implied roles (keystone-manage bootstrap: admin implies member, member
 * implies reader). Keystone lists implied roles in a token; headers in noauth mode may not.
 */
const IMPLIED_ROLES: Readonly<Record<string, readonly string[]>> = { admin: ['member', 'reader'], member: ['reader'] }

export interface PolicyInit {
  /**
   * Glance's secure-RBAC defaults (`[oslo_policy] enforce_new_defaults` with `[DEFAULT]
   * enforce_secure_rbac`); false gives the legacy variant: deprecated defaults ORed in, plus
   * Glance's hard-coded owner checks.
   */
  enforceNewDefaults?: boolean
  /**
   * Refuse tokens whose scope is not among a rule's `scope_types` (`[oslo_policy] enforce_scope`;
   * Glance 25 with oslo.policy 4.0 leaves it off).
   */
  enforceScope?: boolean
  /** Operator overrides, rule name to check string, as in an oslo.policy YAML file. */
  rules?: Readonly<Record<string, string>>
}

/** What the metadef rules see of a namespace. */
export interface NamespaceTarget { owner: string | null, visibility: string }

/** The proposal of a new image that `add_image` is checked against. */
export interface ProposedImage { owner: string | null, visibility?: string }

export class GlancePolicy {
  readonly enforceNewDefaults: boolean
  readonly enforceScope: boolean
  readonly #rules = new Map<string, Check>()
  readonly #credentials = new WeakMap<Identity, Credentials>()

  /** @throws PolicySyntaxError naming the rule when an override cannot be parsed or loops. */
  constructor (init: PolicyInit = {}) {
    this.enforceNewDefaults = init.enforceNewDefaults ?? true
    this.enforceScope = init.enforceScope ?? false
    for (const [name, rule] of Object.entries(GLANCE_RULES) as Array<[string, RuleDefault]>) {
      const check = parseRule(rule.check)
      this.#rules.set(name, rule.legacy != null && !this.enforceNewDefaults ? { kind: 'or', checks: [check, parseRule(rule.legacy)] } : check)
    }
    for (const [name, text] of Object.entries(init.rules ?? {})) {
      if (typeof text !== 'string') throw new PolicySyntaxError(`policy rule "${name}" must be a string`)
      try {
        this.#rules.set(name, parseRule(text))
      } catch (err) {
        throw new PolicySyntaxError(`policy rule "${name}": ${(err as Error).message}`)
      }
    }
    this.#refuseLoops()
  }

  /**
   * Whether `rule` allows the caller on `target`; an unknown rule allows nobody, and with
   * `enforceScope` a rule allows no token outside its scope types (oslo.policy's InvalidScope,
   * which Glance answers as a refusal).
   */
  allows (rule: string, who: Identity, target: Target): boolean {
    const check = this.#rules.get(rule)
    if (check == null) return false
    const creds = this.#credentialsOf(who)
    const scopes = scopeTypesOf(rule)
    if (this.enforceScope && scopes != null && !scopes.includes(tokenScope(creds))) return false
    return evaluate(check, creds, target, name => this.#rules.get(name))
  }

  /** Glance's `context.is_admin`: the `context_is_admin` rule, checked against the caller. */
  isAdmin (who: Identity): boolean {
    return this.#credentialsOf(who).is_admin === true
  }

  /**
   * Whether the caller can find the image at all (glance/db/utils.py is_image_visible): admins,
   * the owner, anyone for public and community images, and member projects of a shared image
   * whatever their member status. Everyone else gets 404, whatever the rules say.
   */
  canFind (who: Identity, image: ImageRecord, members: readonly MemberRecord[]): boolean {
    if (image.status === 'deleted' || image.status === 'pending_delete') return false
    if (this.isAdmin(who) || image.owner == null) return true
    if (image.visibility === 'public' || image.visibility === 'community') return true
    if (who.projectId == null) return false
    if (image.owner === who.projectId) return true
    return image.visibility === 'shared' && members.some(m => m.member_id === who.projectId)
  }

  /**
   * Checks a rule on an image the caller found. A refusal is a 404 when the caller may not even
   * `get_image` it, so nothing reveals that it exists, and a 403 otherwise (ImageAPIPolicy._enforce).
   */
  enforce (rule: ImageRule, who: Identity, image: ImageRecord): void {
    if (!this.permits(rule, who, image)) {
      if (rule === 'get_image' || !this.permits('get_image', who, image)) throw new ImageNotFoundError(NOT_FOUND)
      throw new ForbiddenError(`You are not authorized to complete ${rule} action.`)
    }
    if (!this.enforceNewDefaults && OWNER_ONLY_IN_LEGACY.has(rule) && !this.isAdmin(who) && !owns(who, image)) {
      throw new ForbiddenError('You do not own this image')
    }
  }

  /** `add_image`, then the visibility asked for (glance/api/v2/policy.py add_image). */
  enforceCreate (who: Identity, proposed: ProposedImage): void {
    const target = { project_id: proposed.owner, owner: proposed.owner, visibility: proposed.visibility ?? 'private' }
    const notTheirs = proposed.owner !== who.projectId
    if (!this.allows('add_image', who, target) || (!this.enforceNewDefaults && notTheirs && !this.isAdmin(who))) {
      throw new ForbiddenError(notTheirs
        ? `You are not permitted to create images owned by '${String(proposed.owner)}'.`
        : 'You are not authorized to complete add_image action.')
    }
    this.#enforceVisibility(who, target.visibility, target)
  }

  /** Setting `visibility` on an existing image: public and community have their own rules. */
  enforceVisibility (who: Identity, image: ImageRecord, visibility: unknown): void {
    this.#enforceVisibility(who, visibility, imageTarget(who, image))
  }

  #enforceVisibility (who: Identity, visibility: unknown, target: Target): void {
    const rule = visibility === 'public' ? 'publicize_image' : visibility === 'community' ? 'communitize_image' : undefined
    if (rule != null && !this.allows(rule, who, target)) throw new ForbiddenError(`You are not authorized to complete ${rule} action.`)
  }

  /** `GET /v2/images` as a whole; each image is then checked with `get_image`. */
  enforceList (who: Identity): void {
    if (!this.allows('get_images', who, { project_id: who.projectId })) {
      throw new ForbiddenError('You are not authorized to complete get_images action.')
    }
  }

  /**
   * Whether the caller can find the namespace at all (glance/db/sqlalchemy/metadef_api/namespace.py
   * _is_namespace_visible): admins, anyone for a namespace with no owner or a public one, its owner.
   */
  canFindNamespace (who: Identity, namespace: NamespaceTarget): boolean {
    if (this.isAdmin(who) || namespace.owner == null || namespace.visibility === 'public') return true
    return who.projectId != null && namespace.owner === who.projectId
  }

  /**
   * Checks a metadef rule against a namespace (or, without one, the caller's project). A refusal
   * is a 404 when the caller may not even `get_metadef_namespace` it, so nothing reveals that it
   * exists, and a 403 otherwise (MetadefAPIPolicy._enforce).
   */
  enforceMetadef (rule: MetadefRule, who: Identity, namespace?: NamespaceTarget): void {
    if (this.permitsMetadef(rule, who, namespace)) return
    // Without a namespace the target is the caller's project, as MetadefAPIPolicy builds it.
    if (rule === 'get_metadef_namespace' || !this.permitsMetadef('get_metadef_namespace', who, namespace)) throw new NotFoundError(NOT_FOUND)
    throw new ForbiddenError(`You are not authorized to complete ${rule} action.`)
  }

  /** Whether a metadef rule allows the caller on the namespace (MetadefAPIPolicy's target), without raising. */
  permitsMetadef (rule: MetadefRule, who: Identity, namespace?: NamespaceTarget): boolean {
    return this.allows(rule, who, namespace == null ? { project_id: who.projectId } : { project_id: namespace.owner, visibility: namespace.visibility })
  }

  /** Whether `rule` allows the caller on the image, without raising (ImageAPIPolicy.check). */
  permits (rule: ImageRule, who: Identity, image: ImageRecord): boolean {
    return this.allows(rule, who, imageTarget(who, image))
  }

  /**
   * The memberships the caller may know of (the database layer's filter): all of them for admins
   * and the owner, a member project's own otherwise.
   */
  membershipsVisibleTo (who: Identity, image: ImageRecord, members: readonly MemberRecord[]): MemberRecord[] {
    if (this.isAdmin(who) || owns(who, image)) return [...members]
    return members.filter(m => who.projectId != null && m.member_id === who.projectId)
  }

  #credentialsOf (who: Identity): Credentials {
    let creds = this.#credentials.get(who)
    if (creds == null) {
      const roles = new Set(who.roles.map(r => r.toLowerCase()))
      for (const role of [...roles]) for (const implied of IMPLIED_ROLES[role] ?? []) roles.add(implied)
      const base: Record<string, unknown> = { roles: [...roles] }
      // Every scalar the authenticator knows (projectId, userId, domainId, ...) under oslo's names.
      for (const [key, value] of Object.entries(who)) {
        if (typeof value === 'string' || typeof value === 'boolean') base[key.replace(/[A-Z]/g, c => `_${c.toLowerCase()}`)] = value
      }
      // glance/context.py: is_admin is the context_is_admin rule, checked against the context itself.
      const adminRule = this.#rules.get('context_is_admin')
      base.is_admin = adminRule != null && evaluate(adminRule, base, scalars(base), name => this.#rules.get(name))
      creds = Object.freeze(base)
      this.#credentials.set(who, creds)
    }
    return creds
  }

  #refuseLoops (): void {
    const state = new Map<string, 'visiting' | 'done'>()
    const visit = (name: string, path: string[]): void => {
      if (state.get(name) === 'done') return
      if (state.get(name) === 'visiting') throw new PolicySyntaxError(`policy rules refer to each other in a loop: ${[...path, name].join(' -> ')}`)
      const check = this.#rules.get(name)
      if (check == null) return
      state.set(name, 'visiting')
      for (const next of referencedRules(check)) visit(next, [...path, name])
      state.set(name, 'done')
    }
    for (const name of this.#rules.keys()) visit(name, [])
  }
}

/** What Glance's policy layer says when it hides a refusal as a 404 (webob's HTTPNotFound without explanation). */
const NOT_FOUND = 'The resource could not be found.'

/** The token's scope as oslo.policy's `_enforce_scope` reads the credentials. */
function tokenScope (creds: Credentials): TokenScope {
  if (creds.system_scope != null && creds.system_scope !== '') return 'system'
  if (creds.domain_id != null && creds.domain_id !== '') return 'domain'
  return 'project'
}

function owns (who: Identity, image: ImageRecord): boolean {
  return who.projectId != null && image.owner === who.projectId
}

/**
 * What rules see of an image (glance/api/policy.py ImageTarget): its fields and extra properties,
 * `project_id` for the owner, and `member_id`, the caller's project when the image is shared and
 * not theirs (the database layer found it because the caller is a member).
 */
export function imageTarget (who: Identity, image: ImageRecord): Target {
  const target: Record<string, string | number | boolean | null> = Object.create(null)
  for (const [key, value] of Object.entries(image.properties)) target[key] = value
  const { properties: _, tags: __, ...base } = image
  Object.assign(target, base)
  target.image_id = image.id
  target.project_id = image.owner
  target.member_id = image.visibility === 'shared' && who.projectId !== image.owner ? who.projectId : null
  return target
}

function scalars (values: Record<string, unknown>): Target {
  const out: Record<string, string | boolean> = {}
  for (const [key, value] of Object.entries(values)) if (typeof value === 'string' || typeof value === 'boolean') out[key] = value
  return out
}
