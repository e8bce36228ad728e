import { randomUUID } from 'node:crypto'
import { ConflictError, ForbiddenError, NotFoundError, ReadOnlyPropertyError, ValidationError } from '@peerglance/interface'
import type { Identity, MetadataStore, MetadefRecord, MetadefType } from '@peerglance/interface'
import {
  MetadefCatalog, associationView, namespaceHref, namespaceView, objectView, propertyDefinition, propertyMap, propertyView,
  resourceTypeView, tagView
} from './metadef-catalog.ts'
import type { PropertyMap } from './metadef-catalog.ts'
import { ASSOCIATION_SCHEMA, NAMESPACE_SCHEMA, OBJECT_SCHEMA, PROPERTY_SCHEMA, TAGS_BODY_SCHEMA, TAG_SCHEMA } from './metadef-schemas.ts'
import type { GlancePolicy, MetadefRule } from './policy.ts'
import type { GlanceRules } from './rules.ts'
import { now } from './time.ts'
import { check } from './validate.ts'

type Body = Record<string, any>
type Query = Record<string, string | string[] | undefined>
type View = Record<string, unknown>

/** The three kinds of named definition inside a namespace, and what differs between them. */
type ChildType = 'object' | 'property' | 'tag'

interface ChildKind {
  /** Glance's word in messages. */
  noun: string
  rules: { list: MetadefRule, get: MetadefRule, add: MetadefRule, modify: MetadefRule, remove: MetadefRule }
  notFound: (name: string, ns: string) => string
  duplicate: (name: string, ns: string) => string
  /** Validates a create or update body; returns the name and the attributes to keep. */
  parse: (body: Body) => { name: string, body: Body }
}

const CHILDREN: Record<ChildType, ChildKind> = {
  object: {
    noun: 'object',
    rules: { list: 'get_metadef_objects', get: 'get_metadef_object', add: 'add_metadef_object', modify: 'modify_metadef_object', remove: 'delete_metadef_object' },
    notFound: (name, ns) => `The metadata definition object with name=${name} was not found in namespace=${ns}.`,
    duplicate: (name, ns) => `A metadata definition object with name=${name} already exists in namespace=${ns}.`,
    parse: body => {
      readOnly(body, ['self', 'schema', 'created_at', 'updated_at'])
      check('object', body, OBJECT_SCHEMA)
      return { name: body.name, body: objectBody(body) }
    }
  },
  property: {
    noun: 'property',
    rules: { list: 'get_metadef_properties', get: 'get_metadef_property', add: 'add_metadef_property', modify: 'modify_metadef_property', remove: 'remove_metadef_property' },
    notFound: (name, ns) => `The metadata definition property with name=${name} was not found in namespace=${ns}.`,
    duplicate: (name, ns) => `A metadata definition property with name=${name} already exists in namespace=${ns}.`,
    parse: body => {
      readOnly(body, ['created_at', 'updated_at'])
      check('property', body, PROPERTY_SCHEMA)
      return { name: body.name, body: propertyDefinition(body) }
    }
  },
  tag: {
    noun: 'tag',
    rules: { list: 'get_metadef_tags', get: 'get_metadef_tag', add: 'add_metadef_tag', modify: 'modify_metadef_tag', remove: 'delete_metadef_tag' },
    notFound: (name, ns) => `The metadata definition tag with name=${name} was not found in namespace=${ns}.`,
    duplicate: (name, ns) => `A metadata tag with name=${name} already exists in namespace=${ns}. (Please note that metadata tag names are case insensitive).`,
    parse: body => {
      readOnly(body, ['created_at', 'updated_at'])
      check('tag', body, TAG_SCHEMA)
      return { name: body.name, body: {} }
    }
  }
}

const NAMESPACE_SORT_KEYS = new Set(['namespace', 'display_name', 'description', 'visibility', 'protected', 'owner', 'created_at', 'updated_at', 'id'])
const CHILD_SORT_KEYS = new Set(['name', 'created_at', 'updated_at', 'id'])

/**
 * Glance's metadata definitions catalog (glance/api/v2/metadef_*.py): namespaces and, inside
 * each, objects, properties, tags and resource type associations. Every call finds the namespace
 * first (404 when absent or not visible to the caller), then asks the policy, which answers 404
 * when the caller may not even read the namespace and 403 otherwise; protected namespaces keep
 * their contents. Definitions are replicated records, so every agent serves the same catalog.
 */
export class MetadefService {
  readonly #store: MetadataStore
  readonly #policy: GlancePolicy
  readonly #rules: GlanceRules

  constructor (components: { metadata: MetadataStore, policy: GlancePolicy }, rules: GlanceRules) {
    this.#store = components.metadata
    this.#policy = components.policy
    this.#rules = rules
  }

  // ---- namespaces ----

  listNamespaces (who: Identity, query: Query): View {
    this.#policy.enforceMetadef('get_metadef_namespaces', who)
    this.#policy.enforceMetadef('list_metadef_resource_types', who)
    const limit = parseLimit(query.limit, this.#rules)
    const visibility = last(query.visibility)
    if (visibility != null && visibility !== '' && visibility !== 'public' && visibility !== 'private') throw new ValidationError(`Invalid visibility value: ${visibility}`)
    const catalog = this.#catalog()
    let namespaces = catalog.namespaces().filter(ns => this.#policy.canFindNamespace(who, target(ns)))
    if (visibility != null && visibility !== '') namespaces = namespaces.filter(ns => (ns.body.visibility ?? 'private') === visibility)
    const resourceTypes = last(query.resource_types)
    if (resourceTypes != null) {
      const wanted = new Set(resourceTypes.split(','))
      namespaces = namespaces.filter(ns => catalog.children(ns, 'association').some(a => wanted.has(a.name)))
    }
    const marker = last(query.marker)
    const markerNs = marker == null ? undefined : this.#find(who, catalog, marker)
    const page = paginate(namespaces, { ...sortOf(query, NAMESPACE_SORT_KEYS, 'namespace'), limit, marker: markerNs }, nsValue)
      .filter(ns => this.#policy.permitsMetadef('get_metadef_namespace', who, target(ns)))
    const params = new URLSearchParams()
    for (const [key, value] of Object.entries(query)) if (key !== 'marker' && value != null) params.set(key, last(value)!)
    const qs = params.toString()
    const result: View = {
      namespaces: page.map(ns => {
        const associations = catalog.children(ns, 'association').map(associationView)
        return { ...namespaceView(ns), ...associations.length > 0 ? { resource_type_associations: associations } : {} }
      }),
      first: qs === '' ? '/v2/metadefs/namespaces' : `/v2/metadefs/namespaces?${qs}`,
      schema: '/v2/schemas/metadefs/namespaces'
    }
    if (page.length > 0 && page.length === limit) {
      params.set('marker', page[page.length - 1].name)
      result.next = `/v2/metadefs/namespaces?${params.toString()}`
    }
    return result
  }

  async createNamespace (who: Identity, input: unknown): Promise<View> {
    const body = requireBody(input)
    readOnly(body, ['self', 'schema', 'created_at', 'updated_at'])
    check('namespace', body, NAMESPACE_SCHEMA)
    this.#policy.enforceMetadef('add_metadef_namespace', who)
    const wants: Array<[unknown, MetadefRule]> = [[body.resource_type_associations, 'add_metadef_resource_type_association'], [body.objects, 'add_metadef_object'], [body.properties, 'add_metadef_property'], [body.tags, 'add_metadef_tag']]
    for (const [given, rule] of wants) if (isPresent(given)) this.#policy.enforceMetadef(rule, who)
    const catalog = this.#catalog()
    const name = body.namespace as string
    if (catalog.namespace(name) != null) throw new ConflictError(`The metadata definition namespace=${name} already exists.`)
    const at = now()
    const ns = record('namespace', randomUUID(), null, name, namespaceBody(body, who), at)
    const records = [ns]
    const echo: View = namespaceView(ns)
    // Everything is checked before anything is written: a refused create stores nothing.
    const taken = (type: MetadefType, childName: string): void => {
      const key = type === 'tag' ? childName.toLowerCase() : childName
      if (records.some(r => r.type === type && (r.type === 'tag' ? r.name.toLowerCase() : r.name) === key)) {
        throw new ConflictError(type === 'association' ? associationExists(childName, name) : CHILDREN[type as ChildType].duplicate(childName, name))
      }
    }
    if (isPresent(body.resource_type_associations)) {
      for (const association of body.resource_type_associations as Body[]) {
        check('resource_type_association', association, ASSOCIATION_SCHEMA)
        taken('association', association.name)
        records.push(...this.#association(catalog, ns, association, at))
      }
      echo.resource_type_associations = (body.resource_type_associations as Body[]).map(a => defined({ name: a.name, prefix: a.prefix, properties_target: a.properties_target }))
    }
    if (isPresent(body.objects)) {
      for (const object of body.objects as Body[]) {
        check('object', object, OBJECT_SCHEMA)
        taken('object', object.name)
        records.push(record('object', randomUUID(), ns.id, object.name, objectBody(object), at))
      }
      echo.objects = records.filter(r => r.type === 'object').map(o => objectView(o, name))
    }
    if (isPresent(body.properties)) {
      for (const [propertyName, definition] of Object.entries(body.properties as PropertyMap)) {
        records.push(record('property', randomUUID(), ns.id, propertyName, propertyDefinition(definition), at))
      }
      echo.properties = propertyMap(body.properties)
    }
    if (isPresent(body.tags)) {
      for (const tag of body.tags as Body[]) {
        check('tag', tag, TAG_SCHEMA)
        taken('tag', tag.name)
        records.push(record('tag', randomUUID(), ns.id, tag.name, {}, at))
      }
      echo.tags = (body.tags as Body[]).map(t => ({ name: t.name }))
    }
    await this.#store.putMetadefs(records)
    return echo
  }

  getNamespace (who: Identity, name: string, query: Query = {}): View {
    const catalog = this.#catalog()
    const ns = catalog.namespace(name)
    if (ns == null || !this.#policy.canFindNamespace(who, target(ns))) throw new NotFoundError(`Metadata definition namespace=${name} was not found.`)
    this.#enforce('get_metadef_namespace', who, ns)
    for (const rule of ['list_metadef_resource_types', 'get_metadef_objects', 'get_metadef_properties', 'get_metadef_tags'] as const) this.#enforce(rule, who, ns)
    const view: View = namespaceView(ns)
    const objects = catalog.children(ns, 'object').map(o => objectView(o, name))
    const associations = catalog.children(ns, 'association')
    const properties = Object.fromEntries(catalog.children(ns, 'property').map(p => [p.name, propertyDefinition(p.body)]))
    const tags = catalog.children(ns, 'tag').map(t => ({ name: t.name }))
    if (objects.length > 0) view.objects = objects
    if (associations.length > 0) view.resource_type_associations = associations.map(associationView)
    if (Object.keys(properties).length > 0) view.properties = properties
    // `?resource_type=` shows the names as that resource type sees them: with its prefix.
    const prefix = associations.find(a => a.name === last(query.resource_type))?.body.prefix as string | undefined
    if (prefix != null && prefix !== '') {
      if (view.properties != null) view.properties = Object.fromEntries(Object.entries(properties).map(([k, v]) => [prefix + k, v]))
      for (const object of objects) {
        if (object.properties != null) object.properties = Object.fromEntries(Object.entries(object.properties).map(([k, v]) => [prefix + k, v]))
        if (Array.isArray(object.required) && object.required.length > 0) object.required = object.required.map(r => prefix + String(r))
      }
    }
    if (tags.length > 0) view.tags = tags
    return view
  }

  async updateNamespace (who: Identity, name: string, input: unknown): Promise<View> {
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, name)
    this.#enforce('modify_metadef_namespace', who, ns)
    const body = requireBody(input)
    readOnly(body, ['self', 'schema', 'created_at', 'updated_at'])
    check('namespace', body, NAMESPACE_SCHEMA)
    const newName = body.namespace as string
    const other = catalog.namespace(newName)
    if (other != null && other.id !== ns.id) {
      throw new ConflictError(`Invalid update. It would result in a duplicate metadata definition namespace with the same name of ${newName}`)
    }
    // A PUT replaces the namespace: attributes left out go back to their defaults (namespaces.py update).
    const updated = { ...ns, name: newName, body: namespaceBody(body, who), updated_at: now() }
    await this.#store.putMetadefs([updated])
    return namespaceView(updated)
  }

  async deleteNamespace (who: Identity, name: string): Promise<void> {
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, name)
    this.#enforce('delete_metadef_namespace', who, ns)
    this.#refuseProtected(ns, `Metadata definition namespace ${ns.name} is protected and cannot be deleted.`)
    const contents = (['object', 'property', 'tag', 'association'] as const).flatMap(type => catalog.children(ns, type))
    await this.#deleted([...catalog.withTwins(ns), ...contents.flatMap(r => catalog.withTwins(r))])
  }

  /** `DELETE .../objects`, `.../properties`, `.../tags`: all of one kind at once. */
  async deleteNamespaceContent (who: Identity, name: string, type: ChildType): Promise<void> {
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, name)
    // Glance checks the namespace's delete rule here (and the tags' own for tags).
    this.#enforce('delete_metadef_namespace', who, ns)
    if (type === 'tag') this.#enforce('delete_metadef_tags', who, ns)
    this.#refuseProtected(ns, `Metadata definition namespace ${ns.name} is protected and cannot be deleted.`)
    await this.#deleted(catalog.children(ns, type).flatMap(r => catalog.withTwins(r)))
  }

  // ---- objects, properties, tags ----

  listChildren (who: Identity, namespace: string, type: ChildType, query: Query = {}): View {
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    this.#enforce(CHILDREN[type].rules.list, who, ns)
    const children = catalog.children(ns, type)
    if (type === 'property') return { properties: Object.fromEntries(children.map(p => [p.name, propertyDefinition(p.body)])) }
    const limit = query.limit == null ? undefined : parseLimit(query.limit, this.#rules)
    const marker = last(query.marker)
    const markerChild = marker == null ? undefined : catalog.child(ns, type, marker)
    if (marker != null && markerChild == null) throw new NotFoundError(CHILDREN[type].notFound(marker, namespace))
    const page = paginate(children, { ...sortOf(query, CHILD_SORT_KEYS, 'name'), limit, marker: markerChild }, childValue)
    // Glance writes this link without its leading slash (metadef_objects.py ResponseSerializer.index).
    if (type === 'object') return { objects: page.map(o => objectView(o, namespace)), schema: 'v2/schemas/metadefs/objects' }
    return { tags: page.map(tagView) }
  }

  getChild (who: Identity, namespace: string, type: ChildType, name: string, query: Query = {}): View {
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    this.#enforce(CHILDREN[type].rules.get, who, ns)
    let lookup = name
    const resourceType = type === 'property' ? last(query.resource_type) : undefined
    if (resourceType != null && resourceType !== '') {
      // A property asked for by the name a resource type uses: its association's prefix comes off.
      this.#enforce('get_metadef_resource_type', who, ns)
      const association = catalog.child(ns, 'association', resourceType)
      if (association == null) throw new NotFoundError(`The metadata definition resource-type association of resource-type=${resourceType} to namespace=${namespace}, was not found.`)
      const prefix = association.body.prefix as string | undefined
      if (prefix == null || prefix === '' || !name.startsWith(prefix)) {
        throw new NotFoundError(`Property ${name} does not start with the expected resource type association prefix of '${prefix ?? ''}'.`)
      }
      lookup = name.slice(prefix.length)
    }
    const child = catalog.child(ns, type, lookup)
    if (child == null) throw new NotFoundError(CHILDREN[type].notFound(lookup, namespace))
    return childView(child, namespace)
  }

  async createChild (who: Identity, namespace: string, type: ChildType, input: unknown): Promise<View> {
    // Glance validates the body before it looks for the namespace.
    const kind = CHILDREN[type]
    const parsed = kind.parse(requireBody(input))
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    this.#enforce(kind.rules.add, who, ns)
    if (catalog.child(ns, type, parsed.name) != null) throw new ConflictError(kind.duplicate(parsed.name, namespace))
    const created = record(type, randomUUID(), ns.id, parsed.name, parsed.body, now())
    await this.#store.putMetadefs([created])
    return childView(created, namespace)
  }

  /** `POST .../tags/{name}`: one tag, named by the path. */
  async createTag (who: Identity, namespace: string, name: string): Promise<View> {
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    check('tag', { name }, TAG_SCHEMA)
    this.#enforce('add_metadef_tag', who, ns)
    if (catalog.child(ns, 'tag', name) != null) throw new ConflictError(CHILDREN.tag.duplicate(name, namespace))
    const created = record('tag', randomUUID(), ns.id, name, {}, now())
    await this.#store.putMetadefs([created])
    return tagView(created)
  }

  /** `POST .../tags`: replaces the namespace's tags, or adds to them with `X-Openstack-Append`. */
  async createTags (who: Identity, namespace: string, input: unknown, append: boolean): Promise<View> {
    const body = requireBody(input)
    readOnly(body, ['created_at', 'updated_at'])
    check('tags', body, TAGS_BODY_SCHEMA)
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    this.#enforce('add_metadef_tags', who, ns)
    const names = ((body.tags ?? []) as Body[]).map(t => t.name as string)
    const existing = append ? catalog.children(ns, 'tag').map(t => t.name) : []
    const seen = new Set<string>()
    for (const name of [...existing, ...names]) {
      if (seen.has(name.toLowerCase())) throw new ConflictError(CHILDREN.tag.duplicate(name, namespace))
      seen.add(name.toLowerCase())
    }
    const at = now()
    const removed = append ? [] : catalog.children(ns, 'tag').flatMap(t => catalog.withTwins(t)).map(t => ({ ...t, deleted: true, updated_at: at }))
    await this.#store.putMetadefs([...removed, ...names.map(name => record('tag', randomUUID(), ns.id, name, {}, at))])
    return { tags: names.map(name => ({ name })) }
  }

  async updateChild (who: Identity, namespace: string, type: ChildType, name: string, input: unknown): Promise<View> {
    // Glance validates the body before it looks for the namespace.
    const kind = CHILDREN[type]
    const parsed = kind.parse(requireBody(input))
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    this.#enforce(kind.rules.modify, who, ns)
    const child = catalog.child(ns, type, name)
    if (child == null) throw new NotFoundError(kind.notFound(name, namespace))
    const other = catalog.child(ns, type, parsed.name)
    if (other != null && other.id !== child.id) throw new ConflictError(kind.duplicate(parsed.name, namespace))
    const updated = { ...child, name: parsed.name, body: parsed.body, updated_at: now() }
    await this.#store.putMetadefs([updated])
    return childView(updated, namespace)
  }

  async deleteChild (who: Identity, namespace: string, type: ChildType, name: string): Promise<void> {
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    const kind = CHILDREN[type]
    this.#enforce(kind.rules.remove, who, ns)
    const child = catalog.child(ns, type, name)
    if (child == null) throw new NotFoundError(kind.notFound(name, namespace))
    this.#refuseProtected(ns, `Metadata definition ${kind.noun} ${child.name} is protected and cannot be deleted.`)
    await this.#deleted(catalog.withTwins(child))
  }

  // ---- resource types ----

  listResourceTypes (who: Identity): View {
    this.#policy.enforceMetadef('list_metadef_resource_types', who)
    return { resource_types: this.#catalog().resourceTypes().map(resourceTypeView) }
  }

  listAssociations (who: Identity, namespace: string): View {
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    this.#enforce('list_metadef_resource_types', who, ns)
    const shown = this.#policy.permitsMetadef('get_metadef_resource_type', who, target(ns))
    return { resource_type_associations: shown ? catalog.children(ns, 'association').map(associationView) : [] }
  }

  async createAssociation (who: Identity, namespace: string, input: unknown): Promise<View> {
    const body = requireBody(input)
    readOnly(body, ['created_at', 'updated_at'])
    check('resource_type_association', body, ASSOCIATION_SCHEMA)
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    this.#enforce('add_metadef_resource_type_association', who, ns)
    if (catalog.child(ns, 'association', body.name) != null) throw new ConflictError(associationExists(body.name, namespace))
    const records = this.#association(catalog, ns, body, now())
    await this.#store.putMetadefs(records)
    return associationView(records[records.length - 1])
  }

  async deleteAssociation (who: Identity, namespace: string, resourceType: string): Promise<void> {
    const catalog = this.#catalog()
    const ns = this.#find(who, catalog, namespace)
    this.#enforce('remove_metadef_resource_type_association', who, ns)
    const association = catalog.child(ns, 'association', resourceType)
    if (association == null) throw new NotFoundError(`Failed to find resource type ${resourceType} to delete`)
    this.#refuseProtected(ns, `Metadata definition resource-type-association ${resourceType} is protected and cannot be deleted.`)
    await this.#deleted([association])
  }

  // ---- internals ----

  #catalog (): MetadefCatalog {
    return new MetadefCatalog(this.#store.metadefs())
  }

  /** The namespace if the caller can see it; otherwise 404, whether it is absent or hidden. */
  #find (who: Identity, catalog: MetadefCatalog, name: string): MetadefRecord {
    const ns = catalog.namespace(name)
    if (ns == null || !this.#policy.canFindNamespace(who, target(ns))) throw new NotFoundError(`Namespace ${name} not found`)
    return ns
  }

  #enforce (rule: MetadefRule, who: Identity, ns: MetadefRecord): void {
    this.#policy.enforceMetadef(rule, who, target(ns))
  }

  async #deleted (records: MetadefRecord[]): Promise<void> {
    const at = now()
    await this.#store.putMetadefs(records.map(r => ({ ...r, deleted: true, updated_at: at })))
  }

  #refuseProtected (ns: MetadefRecord, message: string): void {
    if (ns.body.protected === true) throw new ForbiddenError(message)
  }

  /** An association record, preceded by its resource type's when the type is new (as Glance creates it). */
  #association (catalog: MetadefCatalog, ns: MetadefRecord, body: Body, at: string): MetadefRecord[] {
    const name = body.name as string
    const records: MetadefRecord[] = []
    if (catalog.resourceType(name) == null) records.push(record('resource_type', name, null, name, { protected: false }, at))
    records.push(record('association', `${ns.id}!${name}`, ns.id, name, defined({ prefix: body.prefix, properties_target: body.properties_target }), at))
    return records
  }
}

function record (type: MetadefType, id: string, namespace: string | null, name: string, body: Body, at: string): MetadefRecord {
  return { type, id, namespace, name, body, created_at: at, updated_at: at, deleted: false }
}

function target (ns: MetadefRecord): { owner: string | null, visibility: string } {
  return { owner: (ns.body.owner as string | undefined) ?? null, visibility: (ns.body.visibility as string | undefined) ?? 'private' }
}

function namespaceBody (body: Body, who: Identity): Body {
  return defined({
    display_name: body.display_name,
    description: body.description,
    visibility: body.visibility ?? 'private',
    protected: body.protected ?? false,
    owner: body.owner ?? who.projectId
  })
}

function objectBody (body: Body): Body {
  return defined({ description: body.description, required: body.required, properties: body.properties == null ? undefined : propertyMap(body.properties) })
}

function childView (child: MetadefRecord, namespace: string): View {
  if (child.type === 'object') return objectView(child, namespace)
  if (child.type === 'property') return propertyView(child)
  return tagView(child)
}

function associationExists (resourceType: string, namespace: string): string {
  return `The metadata definition resource-type association of resource-type=${resourceType} to namespace=${namespace}, already exists.`
}

function requireBody (input: unknown): Body {
  if (input == null || typeof input !== 'object' || Array.isArray(input)) throw new ValidationError('Body expected in request.')
  return input as Body
}

function readOnly (body: Body, keys: readonly string[]): void {
  for (const key of keys) if (Object.hasOwn(body, key)) throw new ReadOnlyPropertyError(key)
}

/** wsme treats an empty list or map like an absent one. */
function isPresent (value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0
  return value != null && typeof value === 'object' && Object.keys(value).length > 0
}

function defined (entries: Body): Body {
  return Object.fromEntries(Object.entries(entries).filter(([, v]) => v != null))
}

function last (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[value.length - 1] : value
}

function parseLimit (value: string | string[] | undefined, rules: GlanceRules): number {
  const text = last(value)
  if (text == null) return Math.min(rules.limitParamDefault, rules.apiLimitMax)
  if (!/^-?\d+$/.test(text.trim())) throw new ValidationError('limit param must be an integer')
  const limit = Number(text)
  if (limit < 0) throw new ValidationError('limit param must be positive')
  return Math.min(limit, rules.apiLimitMax)
}

function sortOf (query: Query, keys: ReadonlySet<string>, nameKey: string): { key: string, dir: 'asc' | 'desc' } {
  const dir = last(query.sort_dir) ?? 'desc'
  if (dir !== 'asc' && dir !== 'desc') throw new ValidationError(`Invalid sort direction: ${dir}`)
  const key = last(query.sort_key) ?? 'created_at'
  if (!keys.has(key) && key !== nameKey) throw new ValidationError(`Invalid sort key: ${key}`)
  return { key, dir }
}

function nsValue (ns: MetadefRecord, key: string): unknown {
  if (key === 'namespace') return ns.name
  if (key === 'id' || key === 'created_at' || key === 'updated_at') return ns[key]
  return ns.body[key] ?? null
}

function childValue (child: MetadefRecord, key: string): unknown {
  return (child as unknown as Record<string, unknown>)[key] ?? null
}

/** Sorts by the key, then created_at and id (as Glance's paginate_query), and takes the page after `marker`. */
function paginate (records: MetadefRecord[], opts: { key: string, dir: 'asc' | 'desc', limit?: number, marker?: MetadefRecord }, value: (r: MetadefRecord, key: string) => unknown): MetadefRecord[] {
  const sign = opts.dir === 'asc' ? 1 : -1
  const compare = (a: MetadefRecord, b: MetadefRecord): number => {
    for (const key of [opts.key, 'created_at', 'id']) {
      const x = String(value(a, key) ?? '')
      const y = String(value(b, key) ?? '')
      if (x !== y) return (x < y ? -1 : 1) * sign
    }
    return 0
  }
  const sorted = [...records].sort(compare)
  const start = opts.marker == null ? 0 : sorted.filter(r => compare(r, opts.marker!) <= 0).length
  return sorted.slice(start, opts.limit == null ? undefined : start + opts.limit)
}
