import type { MetadefRecord, MetadefType } from '@peerglance/interface'

/**
 * Resource types every Glance has from its database migrations (glance-manage db_sync), protected
 * as "seeded-system" types. Every agent has them, so they are data, not replicated records.
 */
export const SEEDED_RESOURCE_TYPES = ['OS::Glance::Image', 'OS::Cinder::Volume', 'OS::Nova::Flavor', 'OS::Nova::Aggregate', 'OS::Nova::Server']
/** When metadata definitions appeared (Juno); the seeded types' timestamps, equal on every agent. */
const SEEDED_AT = '2014-10-16T00:00:00Z'

/** The attributes Glance keeps of a property definition (glance/api/v2/model/metadef_property_type.py); others are dropped. */
const PROPERTY_KEYS = new Set([
  'type', 'title', 'description', 'operators', 'default', 'readonly', 'minimum', 'maximum', 'enum', 'pattern',
  'minLength', 'maxLength', 'confidential', 'items', 'uniqueItems', 'minItems', 'maxItems', 'additionalItems'
])

export type PropertyMap = Record<string, Record<string, unknown>>

/** A property definition as Glance stores it: known attributes only, `items` reduced to type and enum. */
export function propertyDefinition (value: Record<string, unknown>): Record<string, unknown> {
  const kept = Object.entries(value).filter(([key]) => PROPERTY_KEYS.has(key)).map(([key, v]): [string, unknown] => {
    if (key !== 'items' || v == null || typeof v !== 'object') return [key, v]
    const items = v as Record<string, unknown>
    return [key, Object.fromEntries(Object.entries(items).filter(([k]) => k === 'type' || k === 'enum'))]
  })
  return Object.fromEntries(kept)
}

export function propertyMap (value: unknown): PropertyMap {
  if (value == null || typeof value !== 'object') return {}
  return Object.fromEntries(Object.entries(value as PropertyMap).map(([name, def]) => [name, propertyDefinition(def)]))
}

/**
 * Of several live records with one name in one place (agents that created or renamed one at the
 * same moment), the one every agent shows: the earliest created, then the smallest id. The others
 * stay stored but hidden, so every agent sees the same catalog whatever order records came in.
 */
function precedes (a: MetadefRecord, b: MetadefRecord): boolean {
  return a.created_at < b.created_at || (a.created_at === b.created_at && a.id < b.id)
}

/** Tag names are unique regardless of case in Glance (its database collation). */
function nameKey (type: MetadefType, name: string): string {
  return type === 'tag' ? name.toLowerCase() : name
}

/**
 * The definitions one agent shows, built from its records: live namespaces by name, each one's
 * live children by type and name, and the resource types. Children of a deleted or hidden
 * namespace are not shown.
 */
export class MetadefCatalog {
  readonly #namespaces = new Map<string, MetadefRecord>()
  readonly #children = new Map<string, Map<string, MetadefRecord>>()
  readonly #resourceTypes = new Map<string, MetadefRecord>()
  /** Live records hidden behind the one shown with their name, by the shown record's id. */
  readonly #hidden = new Map<string, MetadefRecord[]>()

  constructor (records: Iterable<MetadefRecord>) {
    const pending: MetadefRecord[] = []
    for (const name of SEEDED_RESOURCE_TYPES) {
      this.#resourceTypes.set(name, { type: 'resource_type', id: name, namespace: null, name, body: { protected: true }, created_at: SEEDED_AT, updated_at: SEEDED_AT, deleted: false })
    }
    for (const record of records) {
      if (record.deleted) continue
      if (record.type === 'namespace') this.#keep(this.#namespaces, record.name, record)
      else if (record.type === 'resource_type') { if (!this.#resourceTypes.has(record.name)) this.#resourceTypes.set(record.name, record) } else pending.push(record)
    }
    const live = new Set([...this.#namespaces.values()].map(ns => ns.id))
    for (const record of pending) {
      if (record.namespace == null || !live.has(record.namespace)) continue
      const slot = `${record.namespace}!${record.type}`
      let byName = this.#children.get(slot)
      if (byName == null) this.#children.set(slot, byName = new Map())
      this.#keep(byName, nameKey(record.type, record.name), record)
    }
  }

  namespace (name: string): MetadefRecord | undefined {
    return this.#namespaces.get(name)
  }

  namespaces (): MetadefRecord[] {
    return [...this.#namespaces.values()]
  }

  children (namespace: MetadefRecord, type: MetadefType): MetadefRecord[] {
    return [...this.#children.get(`${namespace.id}!${type}`)?.values() ?? []]
  }

  child (namespace: MetadefRecord, type: MetadefType, name: string): MetadefRecord | undefined {
    return this.#children.get(`${namespace.id}!${type}`)?.get(nameKey(type, name))
  }

  resourceTypes (): MetadefRecord[] {
    return [...this.#resourceTypes.values()]
  }

  resourceType (name: string): MetadefRecord | undefined {
    return this.#resourceTypes.get(name)
  }

  /**
   * The record shown and the live ones it hides (same name, same place): what a delete removes,
   * so that deleting a name never brings back a twin another agent created meanwhile.
   */
  withTwins (record: MetadefRecord): MetadefRecord[] {
    return [record, ...this.#hidden.get(record.id) ?? []]
  }

  #keep (map: Map<string, MetadefRecord>, key: string, record: MetadefRecord): void {
    const current = map.get(key)
    if (current == null) {
      map.set(key, record)
      return
    }
    const [shown, hidden] = precedes(record, current) ? [record, current] : [current, record]
    map.set(key, shown)
    this.#hidden.set(shown.id, [...this.#hidden.get(hidden.id) ?? [], ...this.#hidden.get(shown.id) ?? [], hidden])
    this.#hidden.delete(hidden.id)
  }
}

// ---- views: the JSON Glance sends (wsme leaves out attributes that are unset) ----

function defined (entries: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(entries).filter(([, v]) => v != null))
}

export function namespaceHref (name: string): string {
  return `/v2/metadefs/namespaces/${name}`
}

export function namespaceView (ns: MetadefRecord): Record<string, unknown> {
  const { display_name: displayName, description, visibility, protected: isProtected, owner } = ns.body
  return defined({
    namespace: ns.name,
    display_name: displayName,
    description,
    visibility: visibility ?? 'private',
    protected: isProtected ?? false,
    owner,
    created_at: ns.created_at,
    updated_at: ns.updated_at,
    self: namespaceHref(ns.name),
    schema: '/v2/schemas/metadefs/namespace'
  })
}

export function objectView (object: MetadefRecord, namespaceName: string): Record<string, unknown> {
  return defined({
    name: object.name,
    description: object.body.description,
    required: object.body.required,
    properties: object.body.properties == null ? undefined : propertyMap(object.body.properties),
    created_at: object.created_at,
    updated_at: object.updated_at,
    self: `${namespaceHref(namespaceName)}/objects/${object.name}`,
    schema: '/v2/schemas/metadefs/object'
  })
}

export function propertyView (property: MetadefRecord): Record<string, unknown> {
  return { name: property.name, ...propertyDefinition(property.body) }
}

export function tagView (tag: MetadefRecord): Record<string, unknown> {
  return { name: tag.name, created_at: tag.created_at, updated_at: tag.updated_at }
}

export function associationView (association: MetadefRecord): Record<string, unknown> {
  return defined({
    name: association.name,
    prefix: association.body.prefix,
    properties_target: association.body.properties_target,
    created_at: association.created_at,
    updated_at: association.updated_at
  })
}

export function resourceTypeView (resourceType: MetadefRecord): Record<string, unknown> {
  return { name: resourceType.name, created_at: resourceType.created_at, updated_at: resourceType.updated_at }
}
