import type { ImageRecord, MemberRecord, ReplicationRules } from '@peerglance/interface'
import { MEMBER_STATUSES } from '@peerglance/interface'
import { metadefRefusal } from './metadef-schemas.ts'
import { BASE_PROPERTIES, UUID_PATTERN, propertyRefusal } from './properties.ts'
import type { GlanceRules } from './rules.ts'
import { imageSchema } from './schemas.ts'
import { canReach } from './status.ts'
import { violation } from './validate.ts'

const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/

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
        const why = propertyRefusal(key, value)
        if (why != null) return why
      }
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

    metadefRefusal
  }
}
