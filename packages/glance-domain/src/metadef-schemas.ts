/*
 * The metadata-definition schemas Glance 25 serves under /v2/schemas/metadefs/ and validates
 * request bodies with (glance/api/v2/metadef_*.py get_schema, glance/schema.py raw()). The same
 * documents check records from peers, so a peer cannot store what the API would refuse.
 */

import { METADEF_TYPES } from '@peerglance/interface'
import type { MetadefRecord } from '@peerglance/interface'
import { violation } from './validate.ts'

type Schema = Record<string, any>

const TYPES = ['array', 'boolean', 'integer', 'number', 'object', 'string', null]

const DEFINITIONS = {
  positiveInteger: { type: 'integer', minimum: 0 },
  positiveIntegerDefault0: { allOf: [{ $ref: '#/definitions/positiveInteger' }, { default: 0 }] },
  stringArray: { type: 'array', items: { type: 'string' }, uniqueItems: true }
}

/** One property definition: what a namespace's or an object's `properties` map to, and a property's own body. */
const PROPERTY_ATTRIBUTES = {
  name: { type: 'string', maxLength: 80 },
  title: { type: 'string' },
  description: { type: 'string' },
  operators: { type: 'array', items: { type: 'string' } },
  type: { type: 'string', enum: TYPES },
  required: { $ref: '#/definitions/stringArray' },
  minimum: { type: 'number' },
  maximum: { type: 'number' },
  maxLength: { $ref: '#/definitions/positiveInteger' },
  minLength: { $ref: '#/definitions/positiveIntegerDefault0' },
  pattern: { type: 'string', format: 'regex' },
  enum: { type: 'array' },
  readonly: { type: 'boolean' },
  default: {},
  items: { type: 'object', properties: { type: { type: 'string', enum: TYPES }, enum: { type: 'array' } } },
  maxItems: { $ref: '#/definitions/positiveInteger' },
  minItems: { $ref: '#/definitions/positiveIntegerDefault0' },
  uniqueItems: { type: 'boolean', default: false },
  additionalItems: { type: 'boolean' }
}

const PROPERTY_MAP = {
  type: 'object',
  additionalProperties: { type: 'object', required: ['title', 'type'], properties: PROPERTY_ATTRIBUTES }
}

const NAMESPACE_DEFINITIONS = { ...DEFINITIONS, property: PROPERTY_MAP }

function timestamps (what: string): Schema {
  return {
    created_at: { type: 'string', readOnly: true, description: `Date and time of ${what} creation`, format: 'date-time' },
    updated_at: { type: 'string', readOnly: true, description: `Date and time of the last ${what} modification`, format: 'date-time' }
  }
}

const READ_ONLY_STRING = { readOnly: true, type: 'string' }

/** glance.schema.Schema.raw(): closed to other attributes. */
function item (name: string, properties: Schema, required?: string[], definitions?: Schema): Schema {
  return {
    name,
    properties,
    additionalProperties: false,
    ...definitions == null ? {} : { definitions },
    ...required == null ? {} : { required }
  }
}

const COLLECTION_LINKS = [{ rel: 'first', href: '{first}' }, { rel: 'next', href: '{next}' }, { rel: 'describedby', href: '{schema}' }]

/** glance.schema.CollectionSchema.raw() (or the DictCollectionSchema of properties): definitions move up a level. */
function collection (name: string, of: Schema, shape: 'array' | 'object' = 'array'): Schema {
  const { definitions, ...itemSchema } = of
  return {
    name,
    properties: {
      [name]: shape === 'array' ? { type: 'array', items: itemSchema } : { type: 'object', additionalProperties: itemSchema },
      first: { type: 'string' },
      next: { type: 'string' },
      schema: { type: 'string' }
    },
    links: COLLECTION_LINKS,
    ...definitions == null ? {} : { definitions }
  }
}

export const NAMESPACE_SCHEMA = item('namespace', {
  namespace: { type: 'string', description: 'The unique namespace text.', maxLength: 80 },
  display_name: { type: 'string', description: 'The user friendly name for the namespace. Used by UI if available.', maxLength: 80 },
  description: { type: 'string', description: 'Provides a user friendly description of the namespace.', maxLength: 500 },
  visibility: { type: 'string', description: 'Scope of namespace accessibility.', enum: ['public', 'private'] },
  protected: { type: 'boolean', description: 'If true, namespace will not be deletable.' },
  owner: { type: 'string', description: 'Owner of the namespace.', maxLength: 255 },
  ...timestamps('namespace'),
  schema: READ_ONLY_STRING,
  self: READ_ONLY_STRING,
  resource_type_associations: {
    type: 'array',
    items: { type: 'object', properties: { name: { type: 'string' }, prefix: { type: 'string' }, properties_target: { type: 'string' } } }
  },
  properties: { $ref: '#/definitions/property' },
  objects: {
    type: 'array',
    items: {
      type: 'object',
      properties: { name: { type: 'string' }, description: { type: 'string' }, required: { $ref: '#/definitions/stringArray' }, properties: { $ref: '#/definitions/property' } }
    }
  },
  tags: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' } } } }
}, ['namespace'], NAMESPACE_DEFINITIONS)

export const OBJECT_SCHEMA = item('object', {
  name: { type: 'string', maxLength: 80 },
  description: { type: 'string' },
  required: { $ref: '#/definitions/stringArray' },
  properties: { $ref: '#/definitions/property' },
  schema: READ_ONLY_STRING,
  self: READ_ONLY_STRING,
  ...timestamps('object')
}, ['name'], NAMESPACE_DEFINITIONS)

// A property alone: its name is required, and its string arrays may not be empty (metadef_properties.py).
export const PROPERTY_SCHEMA = item('property', PROPERTY_ATTRIBUTES, ['type', 'title', 'name'], {
  ...DEFINITIONS,
  stringArray: { ...DEFINITIONS.stringArray, minItems: 1 }
})

export const TAG_SCHEMA = item('tag', { name: { type: 'string', maxLength: 80 }, ...timestamps('tag') }, ['name'])

/** The body of `POST /v2/metadefs/namespaces/{namespace}/tags`. */
export const TAGS_BODY_SCHEMA = item('tags', {
  tags: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false } }
})

// Glance names the resource type documents after what they describe: associations.
export const ASSOCIATION_SCHEMA = item('resource_type_association', {
  name: {
    type: 'string',
    description: 'Resource type names should be aligned with Heat resource types whenever possible: https://docs.openstack.org/heat/latest/template_guide/openstack.html',
    maxLength: 80
  },
  prefix: {
    type: 'string',
    description: 'Specifies the prefix to use for the given resource type. Any properties in the namespace should be prefixed with this prefix when being applied to the specified resource type. Must include prefix separator (e.g. a colon :).',
    maxLength: 80
  },
  properties_target: {
    type: 'string',
    description: 'Some resource types allow more than one key / value pair per instance.  For example, Cinder allows user and image metadata on volumes. Only the image properties metadata is evaluated by Nova (scheduling or drivers). This property allows a namespace target to remove the ambiguity.',
    maxLength: 80
  },
  created_at: { type: 'string', readOnly: true, description: 'Date and time of resource type association', format: 'date-time' },
  updated_at: { type: 'string', readOnly: true, description: 'Date and time of the last resource type association modification', format: 'date-time' }
}, ['name'])

/** The ten documents under `/v2/schemas/metadefs/`, by path. */
export function metadefSchemaDocuments (): Array<[string, Schema]> {
  const { required: _, ...propertyInCollection } = PROPERTY_SCHEMA
  return [
    ['metadefs/namespace', NAMESPACE_SCHEMA],
    ['metadefs/namespaces', collection('namespaces', NAMESPACE_SCHEMA)],
    ['metadefs/resource_type', ASSOCIATION_SCHEMA],
    ['metadefs/resource_types', collection('resource_type_associations', ASSOCIATION_SCHEMA)],
    ['metadefs/property', PROPERTY_SCHEMA],
    // In a collection a property's name is its key, so only type and title are required.
    ['metadefs/properties', collection('properties', { ...propertyInCollection, required: ['type', 'title'] }, 'object')],
    ['metadefs/object', OBJECT_SCHEMA],
    ['metadefs/objects', collection('objects', OBJECT_SCHEMA)],
    ['metadefs/tag', TAG_SCHEMA],
    ['metadefs/tags', collection('tags', TAG_SCHEMA)]
  ]
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/
/** The API reads JSON bodies of at most 1 MiB; no definition from a peer may be bigger. */
const MAX_BODY_BYTES = 1024 * 1024

/**
 * Why a definition from a peer is not one the API could have stored, or undefined: its shape,
 * ids, name and attributes are held to the schemas the API validates request bodies with.
 */
export function metadefRefusal (next: MetadefRecord): string | undefined {
  if (!(METADEF_TYPES as readonly string[]).includes(next.type)) return `unknown definition type ${String(next.type).slice(0, 40)}`
  if (typeof next.name !== 'string' || next.name.length === 0 || next.name.length > 80) return 'name empty, longer than 80 characters or not a string'
  for (const key of ['created_at', 'updated_at'] as const) {
    if (typeof next[key] !== 'string' || !TIMESTAMP.test(next[key])) return `${key} is not a timestamp`
  }
  if (typeof next.deleted !== 'boolean') return 'deleted is not a boolean'
  if (next.body == null || typeof next.body !== 'object' || Array.isArray(next.body)) return 'body is not an object'
  if (Buffer.byteLength(JSON.stringify(next.body)) > MAX_BODY_BYTES) return `body larger than ${MAX_BODY_BYTES} bytes`
  const inNamespace = next.type !== 'namespace' && next.type !== 'resource_type'
  if (inNamespace ? typeof next.namespace !== 'string' || !UUID.test(next.namespace) : next.namespace !== null) return 'bad namespace id'
  const id = next.type === 'resource_type' ? next.name : next.type === 'association' ? `${String(next.namespace)}!${next.name}` : undefined
  if (id == null ? !UUID.test(next.id) : next.id !== id) return `id ${String(next.id).slice(0, 100)} does not match the definition`
  const why = bodyViolation(next)
  return why == null ? undefined : `${next.type} ${next.name}: ${why}`
}

function bodyViolation ({ type, name, body }: MetadefRecord): string | undefined {
  switch (type) {
    case 'namespace': return violation({ ...body, namespace: name }, NAMESPACE_SCHEMA)
    case 'object': return violation({ ...body, name }, OBJECT_SCHEMA)
    // As in a namespace's `properties`, where most property definitions come from.
    case 'property': return violation(body, PROPERTY_MAP.additionalProperties, NAMESPACE_SCHEMA)
    case 'tag': return violation({ ...body, name }, TAG_SCHEMA)
    case 'association': return violation({ ...body, name }, ASSOCIATION_SCHEMA)
    case 'resource_type': return violation(body, { type: 'object', properties: { protected: { type: 'boolean' } }, additionalProperties: false })
  }
}
