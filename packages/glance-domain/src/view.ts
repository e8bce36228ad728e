import type { ImageRecord, MemberRecord, TaskRecord } from '@peerglance/interface'
import { HIDDEN_PROPERTIES, SCHEMA_EXTRA_PROPERTIES } from './properties.ts'
import { SITE_PROPERTY_PREFIX, storeFields } from './sites.ts'

/** The flat JSON body of an image (glance-api.md §3.2); links are relative, as Glance sends them. */
export function imageView (image: ImageRecord): Record<string, unknown> {
  const { properties, ...base } = image
  // fromEntries keeps a property named like an Object.prototype member (`__proto__`) as data.
  const extra = Object.entries(properties)
    .filter(([key]) => !HIDDEN_PROPERTIES.has(key) && !key.startsWith(SITE_PROPERTY_PREFIX))
    .map(([key, value]) => [key, value ?? (Object.hasOwn(SCHEMA_EXTRA_PROPERTIES, key) ? null : '')])
  return {
    ...base,
    tags: [...base.tags],
    self: `/v2/images/${image.id}`,
    file: `/v2/images/${image.id}/file`,
    schema: '/v2/schemas/image',
    ...Object.fromEntries(extra),
    ...storeFields(image)
  }
}

export function memberView (member: MemberRecord): Record<string, unknown> {
  return { ...member, schema: '/v2/schemas/member' }
}

export function taskView (task: TaskRecord): Record<string, unknown> {
  return { ...task, deleted: false, deleted_at: null }
}
