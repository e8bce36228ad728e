import { metadefSchemaDocuments } from './metadef-schemas.ts'
import { SCHEMA_EXTRA_PROPERTIES } from './properties.ts'

export interface SchemaFormats { diskFormats: readonly string[], containerFormats: readonly string[] }

const UUID = '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$'
const TIMESTAMP = { type: 'string', readOnly: true }

/**
 * `GET /v2/schemas/image`, shaped as glance/api/v2/images.py get_base_properties() plus
 * etc/schema-image.json. `stores` is left out on purpose: Debian's glance CLI breaks on a schema
 * that lists it (glance-api.md §26), and a single-store service never sets it.
 */
export function imageSchema (formats: SchemaFormats): Record<string, unknown> {
  return {
    name: 'image',
    properties: {
      id: { type: 'string', description: 'An identifier for the image', pattern: UUID },
      name: { type: ['null', 'string'], description: 'Descriptive name for the image', maxLength: 255 },
      status: { type: 'string', readOnly: true, description: 'Status of the image', enum: ['queued', 'saving', 'active', 'killed', 'deleted', 'uploading', 'importing', 'pending_delete', 'deactivated'] },
      visibility: { type: 'string', description: 'Scope of image accessibility', enum: ['community', 'public', 'private', 'shared'] },
      protected: { type: 'boolean', description: 'If true, image will not be deletable.' },
      os_hidden: { type: 'boolean', description: 'If true, image will not appear in default image list response.' },
      checksum: { type: ['null', 'string'], readOnly: true, description: 'md5 hash of image contents.', maxLength: 32 },
      os_hash_algo: { type: ['null', 'string'], readOnly: true, description: 'Algorithm to calculate the os_hash_value', maxLength: 64 },
      os_hash_value: { type: ['null', 'string'], readOnly: true, description: 'Hexdigest of the image contents using the algorithm specified by the os_hash_algo', maxLength: 128 },
      owner: { type: ['null', 'string'], description: 'Owner of the image', maxLength: 255 },
      size: { type: ['null', 'integer'], readOnly: true, description: 'Size of image file in bytes' },
      virtual_size: { type: ['null', 'integer'], readOnly: true, description: 'Virtual size of image in bytes' },
      container_format: { type: ['null', 'string'], description: 'Format of the container', enum: [null, ...formats.containerFormats] },
      disk_format: { type: ['null', 'string'], description: 'Format of the disk', enum: [null, ...formats.diskFormats] },
      created_at: { ...TIMESTAMP, description: 'Date and time of image registration' },
      updated_at: { ...TIMESTAMP, description: 'Date and time of the last image modification' },
      tags: { type: 'array', description: 'List of strings related to the image', items: { type: 'string', maxLength: 255 } },
      direct_url: { type: 'string', readOnly: true, description: 'URL to access the image file kept in external store' },
      min_ram: { type: 'integer', description: 'Amount of ram (in MB) required to boot image.' },
      min_disk: { type: 'integer', description: 'Amount of disk space (in GB) required to boot image.' },
      self: { type: 'string', readOnly: true, description: 'An image self url' },
      file: { type: 'string', readOnly: true, description: 'An image file url' },
      schema: { type: 'string', readOnly: true, description: 'An image schema url' },
      locations: {
        type: 'array',
        items: {
          type: 'object',
          properties: { url: { type: 'string', maxLength: 255 }, metadata: { type: 'object' } },
          required: ['url', 'metadata']
        },
        description: 'A set of URLs to access the image file kept in external store'
      },
      ...SCHEMA_EXTRA_PROPERTIES
    },
    additionalProperties: { type: 'string' },
    links: [
      { rel: 'self', href: '{self}' },
      { rel: 'enclosure', href: '{file}' },
      { rel: 'describedby', href: '{schema}' }
    ]
  }
}

export function imagesSchema (formats: SchemaFormats): Record<string, unknown> {
  return {
    name: 'images',
    properties: {
      images: { type: 'array', items: imageSchema(formats) },
      schema: { type: 'string' },
      first: { type: 'string' },
      next: { type: 'string' }
    },
    links: [
      { rel: 'first', href: '{first}' },
      { rel: 'next', href: '{next}' },
      { rel: 'describedby', href: '{schema}' }
    ]
  }
}

const MEMBER = {
  name: 'member',
  properties: {
    member_id: { type: 'string', description: 'An identifier for the image member (tenantId)' },
    image_id: { type: 'string', description: 'An identifier for the image', pattern: UUID },
    created_at: { type: 'string', description: 'Date and time of image member creation' },
    updated_at: { type: 'string', description: 'Date and time of last modification of image member' },
    status: { type: 'string', description: 'The status of this image member', enum: ['pending', 'accepted', 'rejected'] },
    schema: { type: 'string', readOnly: true }
  }
}

const TASK_PROPERTIES = {
  id: { type: 'string', description: 'An identifier for the task', pattern: UUID },
  type: { type: 'string', description: 'The type of task represented by this content', enum: ['import', 'api_image_import'] },
  status: { type: 'string', description: 'The current status of this task', enum: ['pending', 'processing', 'success', 'failure'] },
  input: { type: ['null', 'object'], description: 'The parameters required by task, JSON blob' },
  result: { type: ['null', 'object'], description: 'The result of current task, JSON blob' },
  owner: { type: 'string', description: 'An identifier for the owner of this task' },
  message: { type: 'string', description: 'Human-readable informative message only included when appropriate (usually on failure)' },
  image_id: { type: 'string', description: 'Image associated with the task' },
  request_id: { type: 'string', description: 'Human-readable informative request-id' },
  user_id: { type: 'string', description: 'User associated with the task' },
  expires_at: { type: ['null', 'string'], description: 'Datetime when this resource would be subject to removal' },
  created_at: { type: 'string', description: 'Datetime when this resource was created' },
  updated_at: { type: 'string', description: 'Datetime when this resource was updated' },
  self: { type: 'string' },
  schema: { type: 'string' }
}

/** `/v2/schemas/task` (glance/api/v2/tasks.py _TASK_SCHEMA), which `POST /v2/tasks` bodies are checked against. */
export const TASK_SCHEMA = { name: 'task', properties: TASK_PROPERTIES }

/** Every document under `/v2/schemas/`, by path. */
export function schemaDocuments (formats: SchemaFormats): Map<string, Record<string, unknown>> {
  const docs = new Map<string, Record<string, unknown>>([
    ['image', imageSchema(formats)],
    ['images', imagesSchema(formats)],
    ['member', MEMBER],
    ['members', { name: 'members', properties: { members: { type: 'array', items: MEMBER }, schema: { type: 'string' } }, links: [{ rel: 'describedby', href: '{schema}' }] }],
    ['task', TASK_SCHEMA],
    ['tasks', { name: 'tasks', properties: { tasks: { type: 'array', items: { name: 'task', properties: TASK_PROPERTIES } }, schema: { type: 'string' }, first: { type: 'string' }, next: { type: 'string' } }, links: [{ rel: 'first', href: '{first}' }, { rel: 'next', href: '{next}' }, { rel: 'describedby', href: '{schema}' }] }]
  ])
  for (const [path, doc] of metadefSchemaDocuments()) docs.set(path, doc)
  return docs
}
