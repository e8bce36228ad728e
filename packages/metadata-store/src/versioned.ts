import type { ImageRecord, MemberRecord, ReplicatedRecord, VersionedField } from '@peerglance/interface'

/** Extra properties are versioned one by one, so concurrent edits of different keys both survive. */
const PROPERTY = 'p:'
/** So are tags: two agents adding different tags at once both keep theirs (tags are a set). */
const TAG = 't:'
/** Fields that exist one per key; a key missing from a write is a removal. */
const KEYED = [PROPERTY, TAG]
/** The CID of the image's manifest: which bytes the image is, wherever they are cached. */
export const MANIFEST_FIELD = 'manifest'

const IMAGE_KEYS = [
  'name', 'status', 'visibility', 'protected', 'os_hidden', 'owner', 'checksum', 'os_hash_algo', 'os_hash_value',
  'size', 'virtual_size', 'container_format', 'disk_format', 'min_ram', 'min_disk', 'created_at', 'updated_at'
] as const

export function imageFields (image: ImageRecord): Record<string, unknown> {
  const fields: Record<string, unknown> = {}
  for (const key of IMAGE_KEYS) fields[key] = image[key]
  for (const [key, value] of Object.entries(image.properties)) fields[PROPERTY + key] = value
  for (const tag of image.tags) fields[TAG + tag] = true
  return fields
}

export function memberFields (member: MemberRecord, removed = false): Record<string, unknown> {
  return { status: member.status, created_at: member.created_at, updated_at: member.updated_at, removed }
}

/**
 * The record after a local write: fields whose value changed get the new clock; extra properties
 * missing from `next` are marked removed. Returns undefined when nothing changed.
 */
export function stamp (prev: ReplicatedRecord | undefined, kind: ReplicatedRecord['kind'], key: string, next: Record<string, unknown>, clock: string, replaceProperties = true): ReplicatedRecord | undefined {
  const fields: Record<string, VersionedField> = { ...prev?.fields }
  let changed = prev == null
  for (const [name, value] of Object.entries(next)) {
    const old = fields[name]
    if (old != null && old.d !== true && same(old.v, value)) continue
    fields[name] = { v: value, c: clock }
    changed = true
  }
  if (replaceProperties) {
    for (const [name, field] of Object.entries(fields)) {
      if (!KEYED.some(prefix => name.startsWith(prefix)) || name in next || field.d === true) continue
      fields[name] = { v: null, c: clock, d: true }
      changed = true
    }
  }
  return changed ? { kind, key, fields } : undefined
}

/**
 * Joins two copies of a record: per field the later clock wins (clocks embed the replica id, so
 * there are no ties). Deletion of an image is final, whatever clocks say, so a late update never
 * brings a deleted image back.
 */
export function merge (local: ReplicatedRecord | undefined, remote: ReplicatedRecord): { record: ReplicatedRecord, changed: boolean } {
  if (local == null) return { record: remote, changed: true }
  const fields: Record<string, VersionedField> = { ...local.fields }
  let changed = false
  for (const [name, theirs] of Object.entries(remote.fields)) {
    const ours = fields[name]
    if (ours != null && !wins(name, theirs, ours, local.kind)) continue
    if (ours != null && ours.c === theirs.c) continue
    fields[name] = theirs
    changed = true
  }
  return { record: changed ? { ...local, fields } : local, changed }
}

function wins (name: string, theirs: VersionedField, ours: VersionedField, kind: ReplicatedRecord['kind']): boolean {
  if (kind === 'image' && name === 'status') {
    if (ours.v === 'deleted' && theirs.v !== 'deleted') return false
    if (theirs.v === 'deleted' && ours.v !== 'deleted') return true
  }
  return theirs.c > ours.c
}

export function versionOf (record: ReplicatedRecord): string {
  let max = ''
  for (const field of Object.values(record.fields)) if (field.c > max) max = field.c
  return max
}

export function toImage (record: ReplicatedRecord): ImageRecord {
  const value = (name: string): any => record.fields[name]?.v ?? null
  const properties: Array<[string, string | null]> = []
  const tags: string[] = []
  for (const [name, field] of Object.entries(record.fields)) {
    if (field.d === true) continue
    if (name.startsWith(PROPERTY)) properties.push([name.slice(PROPERTY.length), field.v as string | null])
    else if (name.startsWith(TAG)) tags.push(name.slice(TAG.length))
  }
  // fromEntries: a property named `__proto__` stays a property instead of becoming a prototype.
  const image = { id: record.key, properties: Object.fromEntries(properties), tags: tags.sort() } as unknown as Record<string, unknown>
  for (const key of IMAGE_KEYS) image[key] = value(key)
  image.protected ??= false
  image.os_hidden ??= false
  image.min_ram ??= 0
  image.min_disk ??= 0
  return image as unknown as ImageRecord
}

export function toMember (record: ReplicatedRecord): MemberRecord | undefined {
  if (record.fields.removed?.v === true) return undefined
  const [imageId, memberId] = splitMemberKey(record.key)
  return {
    image_id: imageId,
    member_id: memberId,
    status: record.fields.status?.v as MemberRecord['status'],
    created_at: record.fields.created_at?.v as string,
    updated_at: record.fields.updated_at?.v as string
  }
}

export function memberKey (imageId: string, memberId: string): string {
  return `${imageId}!${memberId}`
}

function splitMemberKey (key: string): [string, string] {
  const at = key.indexOf('!')
  return [key.slice(0, at), key.slice(at + 1)]
}

export function manifestCidOf (record: ReplicatedRecord | undefined): string | null {
  return (record?.fields[MANIFEST_FIELD]?.v as string | null | undefined) ?? null
}

function same (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i])
  return false
}
