/** The kinds of metadata definition Glance keeps (glance/db/sqlalchemy/models_metadef.py). */
export const METADEF_TYPES = ['namespace', 'object', 'property', 'tag', 'resource_type', 'association'] as const
export type MetadefType = typeof METADEF_TYPES[number]

/**
 * One metadata definition as the domain keeps it. Names can change (a PUT may rename a namespace,
 * object, property or tag), so records are keyed by an id that never does; children point at
 * their namespace by id, so renaming a namespace changes one record.
 */
export interface MetadefRecord {
  type: MetadefType
  /**
   * A UUID for namespaces, objects, properties and tags; the name for resource types (they are
   * never renamed, so two agents creating one make the same record); `<namespace id>!<resource
   * type>` for a resource type association.
   */
  id: string
  /** The id of the namespace it belongs to; null for namespaces and resource types. */
  namespace: string | null
  name: string
  /**
   * Glance's other attributes: a namespace's display_name, description, visibility, protected
   * and owner; an object's description, required and properties; a property's JSON schema; an
   * association's prefix and properties_target; a resource type's protected.
   */
  body: Record<string, unknown>
  created_at: string
  updated_at: string
  /** Deleted for good: a tombstone, so that a late update from a peer cannot bring it back. */
  deleted: boolean
}
