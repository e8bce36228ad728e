import { createHash } from 'node:crypto'
import type { ImageRecord, MemberRecord, MetadefRecord, MetadefType, RecordSigner, ReplicatedRecord, TaskRecord, VersionedField, WriteSeal } from '@peerglance/interface'
import { wallOf } from './hlc.ts'

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

const TASK_KEYS = ['type', 'status', 'owner', 'request_id', 'user_id', 'input', 'result', 'message', 'created_at', 'updated_at', 'expires_at'] as const

/** An import task, as replicated: one field per attribute, written by the agent running it. */
export function taskFields (task: TaskRecord): Record<string, unknown> {
  return Object.fromEntries(TASK_KEYS.map(key => [key, task[key]]))
}

/** `<imageId>!<taskId>`: an image's tasks are found by prefix. */
export function taskKey (imageId: string, taskId: string): string {
  return `${imageId}!${taskId}`
}

export function toTask (record: ReplicatedRecord): TaskRecord {
  const at = record.key.indexOf('!')
  const task: Record<string, unknown> = { id: record.key.slice(at + 1), image_id: record.key.slice(0, at) }
  for (const key of TASK_KEYS) task[key] = record.fields[key]?.v ?? null
  return task as unknown as TaskRecord
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

/** The fields that are an image's bytes: once it is active, replication never changes them. */
export const DATA_FIELDS = [MANIFEST_FIELD, 'size', 'checksum', 'os_hash_algo', 'os_hash_value', 'virtual_size', 'disk_format', 'container_format'] as const
/** Statuses whose image has its data; none of them ever goes back to one without. */
const HAS_DATA = new Set(['active', 'deactivated', 'pending_delete'])
/**
 * How long after an image became active here another agent's earlier activation of the same image
 * (two uploads racing) can still replace its data. After that the data is fixed for good: bytes
 * this agent may have served never change under a client.
 */
export const DATA_SETTLE_MS = 120_000

export type MergeResult = { record: ReplicatedRecord, changed: boolean } | { refused: string }

/**
 * Joins two copies of a record: per field the later clock wins (clocks embed the replica id, so
 * there are no ties). Deletion of an image is final, whatever clocks say, so a late update never
 * brings a deleted image back. An image's data fields move as one group and are write-once:
 * - a copy that has data (active, deactivated, pending_delete) beats one that has none, whatever
 *   the clocks (no status with data ever legitimately goes back to one without);
 * - two copies with different data (uploads racing on two agents): the earlier activation wins,
 *   on every agent alike, while the later one is younger than DATA_SETTLE_MS here;
 * - any other change to the data of an image that has it here is refused.
 */
export function merge (local: ReplicatedRecord | undefined, remote: ReplicatedRecord, now = Date.now()): MergeResult {
  if (local == null) return { record: remote, changed: true }
  const fields: Record<string, VersionedField> = { ...local.fields }
  for (const [name, theirs] of Object.entries(remote.fields)) {
    const ours = fields[name]
    if (ours != null && !wins(name, theirs, ours, local.kind)) continue
    if (ours != null && ours.c === theirs.c) continue
    fields[name] = theirs
  }
  if (local.kind === 'image' && fields.status?.v !== 'deleted') {
    const refused = writeOnce(local, remote, fields, now)
    if (refused != null) return { refused }
  }
  const changed = Object.keys(fields).length !== Object.keys(local.fields).length || Object.entries(fields).some(([name, f]) => local.fields[name] !== f)
  return { record: changed ? { ...local, fields } : local, changed }
}

/** Applies the data rules to `fields` (the per-field merge); returns why the copy is refused. */
function writeOnce (local: ReplicatedRecord, remote: ReplicatedRecord, fields: Record<string, VersionedField>, now: number): string | undefined {
  const ours = hasData(local)
  const theirs = hasData(remote)
  if (!ours && !theirs) return undefined
  const manifestOf = (r: ReplicatedRecord): unknown => r.fields[MANIFEST_FIELD]?.v
  if (!ours || (theirs && manifestOf(remote) !== manifestOf(local) && racedEarlier(remote, local, now))) {
    for (const name of [...DATA_FIELDS, 'status']) {
      if (remote.fields[name] != null) fields[name] = remote.fields[name]
      else delete fields[name]
    }
    return undefined
  }
  if (theirs && manifestOf(remote) !== manifestOf(local)) {
    return `another upload of this active image (manifest ${String(manifestOf(remote))}, not ${String(manifestOf(local))})`
  }
  for (const name of DATA_FIELDS) {
    const before = local.fields[name]
    const after = fields[name]
    if (before !== after && !same(before?.v ?? null, after?.v ?? null)) return `changes ${name} of an image that has its data`
  }
  if (!HAS_DATA.has(fields.status?.v as string)) return `sets status ${String(fields.status?.v)} on an image that has its data`
  return undefined
}

function hasData (record: ReplicatedRecord): boolean {
  return HAS_DATA.has(record.fields.status?.v as string) && record.fields[MANIFEST_FIELD]?.v != null
}

/** Whether `remote`'s activation came first and `local`'s is recent enough to give way. */
function racedEarlier (remote: ReplicatedRecord, local: ReplicatedRecord, now: number): boolean {
  const theirs = remote.fields[MANIFEST_FIELD]!.c
  const ours = local.fields[MANIFEST_FIELD]!.c
  return theirs < ours && now - wallOf(ours) < DATA_SETTLE_MS
}

function wins (name: string, theirs: VersionedField, ours: VersionedField, kind: ReplicatedRecord['kind']): boolean {
  if (kind === 'image' && name === 'status') {
    if (ours.v === 'deleted' && theirs.v !== 'deleted') return false
    if (theirs.v === 'deleted' && ours.v !== 'deleted') return true
  }
  // A deleted definition stays deleted, as a deleted image does (a new one gets a new id).
  if (kind === 'metadef' && name === 'deleted' && ours.v !== theirs.v) return theirs.v === true
  return theirs.c > ours.c
}

// ---- signatures ----

/** What a field contributes to its write's signature. */
function fieldHash (name: string, field: VersionedField): string {
  return createHash('sha256').update(JSON.stringify([name, field.v, field.d === true])).digest('base64')
}

/** The bytes signed for the write at `clock`: every field it set, by name and value hash. */
function writeMessage (record: ReplicatedRecord, clock: string, entries: Array<[string, string]>): Uint8Array {
  entries.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
  return createHash('sha256').update(JSON.stringify(['peerglance/write/1', record.kind, record.key, clock, entries])).digest()
}

/** The fields of `record` set by the write at `clock` and still there, with their hashes. */
function present (record: ReplicatedRecord, clock: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const [name, field] of Object.entries(record.fields)) if (field.c === clock) out.push([name, fieldHash(name, field)])
  return out
}

/** The replica id an agent's clocks carry: derived from its peer id, so a signer cannot write under another's. */
export function replicaIdOf (peerId: string): string {
  return createHash('sha256').update(peerId).digest('hex').slice(0, 16)
}

function replicaOfClock (clock: string): string {
  return clock.slice(clock.lastIndexOf('.') + 1)
}

/**
 * The seals `fields` need: the one for each clock they hold, taken from the copies they came from,
 * with the fields of that write no longer present (replaced by later writes) listed as hashes.
 * `fresh` is the clock of a new local write, signed here.
 */
export function sealsFor (kind: ReplicatedRecord['kind'], key: string, fields: Record<string, VersionedField>, sources: ReadonlyArray<ReplicatedRecord | undefined>, fresh?: { clock: string, signer: RecordSigner }): Record<string, WriteSeal> {
  const clocks = new Set(Object.values(fields).map(f => f.c))
  const seals: Record<string, WriteSeal> = {}
  const gone = new Map<string, Map<string, string>>()
  const addGone = (clock: string, name: string, hash: () => string): void => {
    if (!clocks.has(clock) || fields[name]?.c === clock) return
    let names = gone.get(clock)
    if (names == null) gone.set(clock, names = new Map())
    if (!names.has(name)) names.set(name, hash())
  }
  for (const source of sources) {
    if (source == null) continue
    for (const [name, field] of Object.entries(source.fields)) addGone(field.c, name, () => fieldHash(name, field))
    for (const [clock, seal] of Object.entries(source.w ?? {})) {
      if (!clocks.has(clock)) continue
      seals[clock] ??= { p: seal.p, s: seal.s }
      for (const [name, hash] of seal.g ?? []) addGone(clock, name, () => hash)
    }
  }
  if (fresh != null) {
    const record = { kind, key, fields }
    seals[fresh.clock] = { p: fresh.signer.id, s: fresh.signer.sign(writeMessage(record, fresh.clock, present(record, fresh.clock))) }
  }
  for (const [clock, names] of gone) if (seals[clock] != null) seals[clock].g = [...names].sort((a, b) => a[0] < b[0] ? -1 : 1)
  for (const clock of Object.keys(seals)) if (!clocks.has(clock)) delete seals[clock]
  return seals
}

/**
 * Checks the signature of every write of `remote` that would change `local`: signed by the agent
 * whose replica id the clock carries, over exactly the fields of that write. Returns why not.
 */
export function unsealed (local: ReplicatedRecord | undefined, remote: ReplicatedRecord, merged: ReplicatedRecord, signer: RecordSigner): string | undefined {
  const clocks = new Set<string>()
  for (const [name, field] of Object.entries(merged.fields)) {
    if (field === remote.fields[name] && local?.fields[name]?.c !== field.c) clocks.add(field.c)
  }
  for (const clock of clocks) {
    const seal = remote.w?.[clock]
    if (seal == null) return `write ${clock} is not signed`
    if (typeof seal.p !== 'string' || typeof seal.s !== 'string') return `write ${clock} has a malformed seal`
    if (replicaIdOf(seal.p) !== replicaOfClock(clock)) return `write ${clock} is signed by ${seal.p}, not the agent whose clock it carries`
    const entries = present(remote, clock)
    for (const entry of Array.isArray(seal.g) ? seal.g : []) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'string') return `write ${clock} has a malformed seal`
      entries.push([entry[0], entry[1]])
    }
    if (!signer.verify(seal.p, writeMessage(remote, clock, entries), seal.s)) return `write ${clock} has a bad signature from ${seal.p}`
  }
  return undefined
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

export function metadefFields (record: MetadefRecord): Record<string, unknown> {
  return { name: record.name, namespace: record.namespace, body: record.body, created_at: record.created_at, updated_at: record.updated_at, deleted: record.deleted }
}

export function metadefKey (type: MetadefType, id: string): string {
  return `${type}!${id}`
}

export function toMetadef (record: ReplicatedRecord): MetadefRecord {
  const at = record.key.indexOf('!')
  const value = (name: string): any => record.fields[name]?.v ?? null
  return {
    type: record.key.slice(0, at) as MetadefType,
    id: record.key.slice(at + 1),
    namespace: value('namespace'),
    name: value('name'),
    body: value('body') ?? {},
    created_at: value('created_at'),
    updated_at: value('updated_at'),
    deleted: value('deleted') === true
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
