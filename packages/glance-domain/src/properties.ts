/**
 * Which image attributes a user may write, as glance/domain/__init__.py and
 * glance/api/v2/images.py decide it.
 */

/** Attributes nobody writes through the API; they are computed or managed by the service. */
export const READ_ONLY = new Set([
  'id', 'status', 'checksum', 'size', 'virtual_size', 'created_at', 'updated_at',
  'direct_url', 'self', 'file', 'schema', 'os_hash_algo', 'os_hash_value', 'stores'
])

/** Attributes the service keeps for itself. `os_glance*` is reserved as a prefix. */
export const RESERVED = new Set(['location', 'deleted', 'deleted_at', 'locations'])

export function isReserved (key: string): boolean {
  return RESERVED.has(key) || key.startsWith('os_glance')
}

/** Properties the image schema defines; everything else is an "extra" property. */
export const BASE_PROPERTIES = new Set([
  'id', 'name', 'status', 'visibility', 'protected', 'os_hidden', 'checksum', 'os_hash_algo',
  'os_hash_value', 'owner', 'size', 'virtual_size', 'container_format', 'disk_format',
  'created_at', 'updated_at', 'tags', 'min_ram', 'min_disk', 'self', 'file', 'schema', 'direct_url'
])

/** Base properties that PATCH may set (replace, or add in v2.1). */
export const WRITABLE_BASE = new Set([
  'name', 'visibility', 'protected', 'os_hidden', 'min_ram', 'min_disk', 'tags',
  'container_format', 'disk_format', 'owner'
])

/**
 * The "custom" properties Glance ships in etc/schema-image.json: part of the schema
 * (so typed) but stored like extra properties and shown only when set.
 */
export const SCHEMA_EXTRA_PROPERTIES: Record<string, Record<string, unknown>> = {
  kernel_id: { type: ['null', 'string'], pattern: '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$', description: 'ID of image stored in Glance that should be used as the kernel when booting an AMI-style image.', is_base: false },
  ramdisk_id: { type: ['null', 'string'], pattern: '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$', description: 'ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style image.', is_base: false },
  instance_uuid: { type: 'string', description: 'Metadata which can be used to record which instance this image is associated with. (Informational only, does not create an instance snapshot.)', is_base: false },
  architecture: { type: 'string', description: 'Operating system architecture as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html', is_base: false },
  os_distro: { type: 'string', description: 'Common name of operating system distribution as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html', is_base: false },
  os_version: { type: 'string', description: 'Operating system version as specified by the distributor.', is_base: false },
  description: { type: 'string', description: 'A human-readable string describing this image.', is_base: false },
  cinder_encryption_key_id: { type: 'string', description: 'Identifier in the OpenStack Key Management Service for the encryption key for the Block Storage Service to use when mounting a volume created from this image', is_base: false },
  cinder_encryption_key_deletion_policy: { type: 'string', enum: ['on_image_deletion', 'do_not_delete'], description: 'States the condition under which the Image Service will delete the object associated with the \'cinder_encryption_key_id\' image property.  If this property is missing, the Image Service will take no action', is_base: false }
}

/** Extra properties Glance never shows (glance/api/v2/images.py ResponseSerializer). */
export const HIDDEN_PROPERTIES = new Set(['os_glance_stage_host', 'os_glance_hash_op_host', 'os_glance_upstream'])

export const UUID_PATTERN = /^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$/

/** Glance's database columns: image_properties.name VARCHAR(255), value TEXT (65,535 bytes). */
export const MAX_PROPERTY_KEY_CHARS = 255
export const MAX_PROPERTY_VALUE_BYTES = 65_535

/** Why an extra property may not be stored, or undefined. */
export function propertyRefusal (key: string, value: unknown): string | undefined {
  if (key.length > MAX_PROPERTY_KEY_CHARS) return `Property name '${key.slice(0, 20)}...' is too long (maximum is ${MAX_PROPERTY_KEY_CHARS} characters).`
  if (typeof value === 'string' && Buffer.byteLength(value, 'utf8') > MAX_PROPERTY_VALUE_BYTES) {
    return `Property value of '${key.slice(0, 20)}${key.length > 20 ? '...' : ''}' is too long (maximum is ${MAX_PROPERTY_VALUE_BYTES} bytes).`
  }
  return undefined
}
