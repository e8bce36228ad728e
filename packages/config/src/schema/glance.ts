import { Type, type Static } from 'typebox'
import { ByteSize } from './byte-size.ts'

export const IMPORT_METHODS = ['glance-direct', 'web-download', 'copy-image', 'glance-download'] as const

// Names follow glance-api.conf (snake_case there, camelCase here) so operators can carry values
// over; defaults are Glance's own (shared glance-api.md §20).
export const GlanceConfig = Type.Object({
  limitParamDefault: Type.Integer({
    minimum: 1,
    default: 25,
    description: 'Images per page of GET /v2/images when the request gives no limit (glance limit_param_default).'
  }),
  apiLimitMax: Type.Integer({
    minimum: 1,
    default: 1000,
    description: 'Largest page GET /v2/images returns, whatever limit the request asks for (glance api_limit_max).'
  }),
  imagePropertyQuota: Type.Integer({
    default: 128,
    description: 'Most additional properties an image may have; more gets 413. Negative means unlimited (glance image_property_quota).'
  }),
  imageTagQuota: Type.Integer({
    default: 128,
    description: 'Most tags an image may have; more gets 413. Negative means unlimited (glance image_tag_quota).'
  }),
  imageMemberQuota: Type.Integer({
    default: 128,
    description: 'Most projects an image may be shared with; more gets 413. Negative means unlimited (glance image_member_quota).'
  }),
  imageSizeCap: Type.Integer({
    minimum: 0,
    // Glance allows up to 8 EiB, but a JS number counts bytes exactly only up to 2^53 - 1.
    maximum: Number.MAX_SAFE_INTEGER,
    default: 1099511627776,
    description: 'Largest image, in bytes, that upload or stage accepts; larger data gets 413. Default 1 TiB (glance image_size_cap).'
  }),
  userStorageQuota: ByteSize({
    default: '0',
    example: '10GB',
    description: 'Total image data a project may store, as a number with an optional unit B, KB, MB, GB or TB (powers of 1024), e.g. 10GB; 0 means unlimited. Quote it in YAML (glance user_storage_quota).'
  }),
  diskFormats: Type.Array(Type.String({ minLength: 1 }), {
    default: ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'],
    description: 'Values accepted for an image\'s disk_format (glance [image_format] disk_formats).'
  }),
  containerFormats: Type.Array(Type.String({ minLength: 1 }), {
    default: ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'],
    description: 'Values accepted for an image\'s container_format (glance [image_format] container_formats).'
  }),
  enabledImportMethods: Type.Array(Type.Enum(IMPORT_METHODS), {
    uniqueItems: true,
    default: ['glance-direct'],
    description: 'Interoperable image import methods that GET /v2/info/import advertises and POST /v2/images/{id}/import accepts (glance enabled_import_methods).'
  }),
  requireImageFormatMatch: Type.Boolean({
    default: true,
    description: 'Reject uploaded data whose inspected format is not the image\'s disk_format (checked for container_format bare, one of the 2024 image-safety fixes; glance [image_format] require_image_format_match).'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'Glance behaviour, limits and quotas, named after their glance-api.conf options.'
})
export type GlanceConfig = Static<typeof GlanceConfig>
