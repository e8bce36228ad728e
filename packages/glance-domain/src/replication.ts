import type { ImageRecord, MemberRecord, ReplicationRules, TaskRecord } from '@peerglance/interface'
import { MEMBER_STATUSES } from '@peerglance/interface'
import { metadefRefusal } from './metadef-schemas.ts'
import { BASE_PROPERTIES, UUID_PATTERN, propertyRefusal } from './properties.ts'
import type { GlanceRules } from './rules.ts'
import { imageSchema } from './schemas.ts'
import { MAX_SITES_PER_IMAGE, SITE_PROPERTY_PREFIX, sitePropertyRefusal } from './sites.ts'
import { canReach } from './status.ts'
import { violation } from './validate.ts'

const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/
const TASK_TYPES = ['import', 'api_image_import', 'location_import']
const TASK_STATUSES = ['pending', 'processing', 'success', 'failure']
/** A task's input and result are small documents; a peer's may not make every agent keep a big one. */
const MAX_TASK_JSON_BYTES = 65_535

/**
 * The API's rules for records that arrive from peers: a peer's record is held to what this
 * agent's API would have accepted (image schema with its types, enums and lengths, property and
 * tag limits and quotas, the status table), so a compromised agent cannot store what a user could
 * not. Read-only attributes are checked too, since a peer sets them.
 */
export function replicationRules (rules: GlanceRules): ReplicationRules {
  const schema = imageSchema(rules) as { properties: Record<string, Record<string, unknown>> }
  const typed = (key: string): Record<string, unknown> => ({ ...schema.properties[key], readOnly: undefined })
  return {
    imageRefusal (next: ImageRecord, prev: ImageRecord | undefined): string | undefined {
      if (!UUID_PATTERN.test(next.id)) return `image id ${next.id.slice(0, 40)} is not a UUID`
      for (const key of BASE_PROPERTIES) {
        if (key === 'id' || key === 'tags' || !(key in schema.properties) || !(key in next)) continue
        const why = violation((next as unknown as Record<string, unknown>)[key], typed(key))
        if (why != null) return `${key}: ${why}`
      }
      for (const key of ['created_at', 'updated_at'] as const) {
        if (typeof next[key] !== 'string' || !TIMESTAMP.test(next[key])) return `${key} is not a timestamp`
      }
      for (const key of ['size', 'virtual_size', 'min_ram', 'min_disk'] as const) {
        if (typeof next[key] === 'number' && next[key] < 0) return `${key} is negative`
      }
      const props = Object.entries(next.properties)
      for (const [key, value] of props) {
        if (BASE_PROPERTIES.has(key)) return `extra property ${key} shadows a base attribute`
        if (value !== null && typeof value !== 'string') return `property ${key.slice(0, 40)} is not a string`
        const why = propertyRefusal(key, value) ?? (key.startsWith(SITE_PROPERTY_PREFIX) ? sitePropertyRefusal(key, value) : undefined)
        if (why != null) return why
      }
      const sites = props.filter(([k]) => k.startsWith(SITE_PROPERTY_PREFIX)).length
      if (sites > MAX_SITES_PER_IMAGE) return `${sites} sites, more than ${MAX_SITES_PER_IMAGE}`
      const counted = props.filter(([k]) => !k.startsWith('os_glance')).length
      if (rules.imagePropertyQuota >= 0 && counted > rules.imagePropertyQuota) return `${counted} properties, more than image_property_quota ${rules.imagePropertyQuota}`
      for (const tag of next.tags) {
        const why = violation(tag, schema.properties.tags.items as Record<string, unknown>)
        if (why != null) return `tag: ${why}`
      }
      if (rules.imageTagQuota >= 0 && next.tags.length > rules.imageTagQuota) return `${next.tags.length} tags, more than image_tag_quota ${rules.imageTagQuota}`
      if (prev != null && !canReach(prev.status, next.status)) return `status ${prev.status} cannot become ${next.status}`
      return undefined
    },

    memberRefusal (next: MemberRecord): string | undefined {
      if (!UUID_PATTERN.test(next.image_id)) return 'member of an image id that is not a UUID'
      if (typeof next.member_id !== 'string' || next.member_id.length === 0 || next.member_id.length > 255) return 'member id empty or longer than 255 characters'
      if (!(MEMBER_STATUSES as readonly string[]).includes(next.status)) return `member status ${String(next.status)} is not one of ${MEMBER_STATUSES.join(', ')}`
      for (const key of ['created_at', 'updated_at'] as const) {
        if (typeof next[key] !== 'string' || !TIMESTAMP.test(next[key])) return `${key} is not a timestamp`
      }
      return undefined
    },

    metadefRefusal,

    taskRefusal
  }
}

/**
 * Why a task record cannot be kept, or undefined: checked on merge, and by the tasks API before it
 * stores one, so an agent never keeps a task that every other agent would refuse.
 */
export function taskRefusal (next: TaskRecord): string | undefined {
  if (!UUID_PATTERN.test(next.image_id) || !UUID_PATTERN.test(next.id)) return 'task of an image id or with an id that is not a UUID'
  if (!TASK_TYPES.includes(next.type)) return `task type ${String(next.type).slice(0, 40)} is not one of ${TASK_TYPES.join(', ')}`
  if (!TASK_STATUSES.includes(next.status)) return `task status ${String(next.status).slice(0, 40)} is not one of ${TASK_STATUSES.join(', ')}`
  for (const key of ['owner', 'request_id', 'user_id'] as const) {
    const v = next[key]
    if (v !== null && (typeof v !== 'string' || v.length > 255)) return `task ${key} is not a string of at most 255 characters`
  }
  for (const key of ['created_at', 'updated_at'] as const) {
    if (typeof next[key] !== 'string' || !TIMESTAMP.test(next[key])) return `task ${key} is not a timestamp`
  }
  if (next.expires_at !== null && (typeof next.expires_at !== 'string' || !TIMESTAMP.test(next.expires_at))) return 'task expires_at is not a timestamp'
  if (typeof next.message !== 'string' || Buffer.byteLength(next.message) > MAX_TASK_JSON_BYTES) return 'task message is not a string of at most 64 KiB'
  for (const key of ['input', 'result'] as const) {
    const v = next[key]
    if (v !== null && (typeof v !== 'object' || Array.isArray(v) || Buffer.byteLength(JSON.stringify(v)) > MAX_TASK_JSON_BYTES)) return `task ${key} is not an object of at most 64 KiB`
  }
  return undefined
}
