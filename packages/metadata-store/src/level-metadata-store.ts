import { createHash, randomBytes } from 'node:crypto'
import { Level } from 'level'
import type {
  ChangeOrigin, ImageRecord, Manifest, ManifestBook, MemberRecord, MetadataStore, MetadefRecord, RecordSigner, RejectedRecord, Replica,
  ReplicatedRecord,
  ReplicationRules, Startable, TaskRecord
} from '@peerglance/interface'
import { HybridClock, wallOf } from './hlc.ts'
import { decodeManifest, encodeManifest, manifestCid } from './manifest-codec.ts'
import {
  MANIFEST_FIELD, imageFields, manifestCidOf, memberFields, memberKey, merge, metadefFields, metadefKey, replicaIdOf, sealsFor, stamp,
  taskFields, taskKey, toImage, toMember, toMetadef, toTask, unsealed, versionOf
} from './versioned.ts'

export interface LevelMetadataStoreInit {
  /** Directory of the LevelDB database. */
  path: string
  /**
   * Signs local writes and checks peers': without it records are neither signed nor checked
   * (a store used alone). With it the replica id is derived from the signer's peer id.
   */
  signer?: RecordSigner
  /** The domain's checks on records from peers (schema, lengths, quotas, status table). */
  rules?: ReplicationRules
}

/** A peer's clock this far ahead of ours is refused: it would win every later write. */
export const MAX_CLOCK_AHEAD_MS = 5 * 60_000

const MAX_REMEMBERED_REFUSALS = 10_000

/** Names one copy of a record: its slot and every clock it holds (a clock fixes a write's value). */
function refusalKey (record: ReplicatedRecord): string | undefined {
  if (record == null || typeof record !== 'object' || record.fields == null || typeof record.fields !== 'object') return undefined
  const clocks = Object.entries(record.fields).map(([name, f]) => `${name}@${String((f as { c?: unknown })?.c)}`).sort()
  return createHash('sha256').update(`${String(record.kind)}!${String(record.key)}\n${clocks.join('\n')}`).digest('base64')
}

function contentHash (record: ReplicatedRecord): string {
  return createHash('sha256').update(JSON.stringify(record)).digest('base64')
}

const KINDS = new Set<unknown>(['image', 'member', 'metadef', 'task'] satisfies Array<ReplicatedRecord['kind']>)

/** Why a record from a peer is not even shaped like one, or undefined. */
function malformedRecord (record: ReplicatedRecord): string | undefined {
  if (record == null || typeof record !== 'object') return 'not an object'
  if (!KINDS.has(record.kind)) return `unknown kind ${String(record.kind)}`
  if (typeof record.key !== 'string' || record.key.length === 0 || record.key.length > 512) return 'bad key'
  if (record.fields == null || typeof record.fields !== 'object') return 'no fields'
  for (const field of Object.values(record.fields)) {
    if (field == null || typeof field !== 'object' || typeof field.c !== 'string' || !/^\d{15}\.\d{6}\.[0-9a-z]+$/.test(field.c)) return 'bad field clock'
  }
  if (record.w != null && typeof record.w !== 'object') return 'bad seals'
  return undefined
}

/** The part of abstract-level's sublevel API used here, typed by value. */
interface Sublevel<V> {
  get: (key: string) => Promise<V | undefined>
  put: (key: string, value: V) => Promise<void>
  del: (key: string) => Promise<void>
  iterator: () => AsyncIterable<[string, V]>
  keys: (range?: { gte?: string, lt?: string, limit?: number }) => AsyncIterable<string> & { all: () => Promise<string[]> }
}

/** The manifest this agent holds for an image, and the CID it was recorded under. */
interface LocalManifest { cid: string, manifest: Manifest }

type BatchOp = { type: 'put', sublevel: unknown, key: string, value: unknown } | { type: 'del', sublevel: unknown, key: string }

/**
 * Chunks of the images `imageOfChunk` found lately, kept in memory (~100 bytes each): an image with
 * more is looked up chunk by chunk.
 */
const MAX_KNOWN_CHUNKS = 16_384

/**
 * Image metadata in LevelDB, kept as replicated records (every field versioned by a hybrid
 * logical clock) so that agents converge whatever order changes reach them in. Images and members
 * are also held in memory, so reads are synchronous; manifests and chunk references stay on disk.
 * A write is visible in memory at once and reaches disk in call order.
 */
export class LevelMetadataStore implements MetadataStore, ManifestBook, Replica, Startable {
  readonly #db: Level<string, unknown>
  readonly #records: Sublevel<ReplicatedRecord>
  readonly #tasks: Sublevel<TaskRecord>
  readonly #manifests: Sublevel<LocalManifest>
  /** `<cid>!<imageId>` for each chunk a local manifest names: answers "is this chunk used?" by prefix. */
  readonly #refs: Sublevel<string>
  readonly #meta: Sublevel<string>
  readonly #state = new Map<string, ReplicatedRecord>()
  readonly #images = new Map<string, ImageRecord>()
  readonly #members = new Map<string, Map<string, MemberRecord>>()
  readonly #taskCache = new Map<string, Map<string, TaskRecord>>()
  readonly #metadefs = new Map<string, MetadefRecord>()
  readonly #listeners = new Set<(record: ReplicatedRecord, origin: ChangeOrigin) => void>()
  readonly #orphanListeners = new Set<(cids: string[]) => void>()
  readonly #rejectedListeners = new Set<(rejected: RejectedRecord) => void>()
  /** Copies refused lately (refusalKey), so that one offered again is not judged, logged and counted again. */
  readonly #refused = new Map<string, string>()
  readonly #signer: RecordSigner | undefined
  readonly #rules: ReplicationRules | undefined
  #clock = new HybridClock('unset')
  #writes: Promise<unknown> = Promise.resolve()
  /**
   * Local manifests decided but not on disk yet, by image id. The image record in memory names a
   * new manifest at once; without this, a download right after an import read the old manifest
   * from disk, found it was not the one named, and answered 503.
   */
  readonly #unwritten = new Map<string, { manifest: LocalManifest | undefined }>()
  /**
   * The chunks of images `imageOfChunk` found lately, by image. It runs for every chunk sent to a
   * peer (the per-image metric), and a range query per chunk was 1.6 % of a downloader's main
   * thread and 5 % of a seed's in the swarm bench (docs/benchmarks.md, issue 8). Emptied whenever
   * a local manifest changes; `#manifestChanges` tells a lookup that raced with a change.
   */
  readonly #knownChunks = new Map<string, ReadonlySet<string>>()
  #knownCount = 0
  #manifestChanges = 0
  #started = false

  constructor (init: LevelMetadataStoreInit) {
    this.#db = new Level<string, unknown>(init.path, { valueEncoding: 'json' })
    this.#signer = init.signer
    this.#rules = init.rules
    const sub = <V>(name: string): Sublevel<V> => this.#db.sublevel(name, { valueEncoding: 'json' }) as unknown as Sublevel<V>
    this.#records = sub('records')
    this.#tasks = sub('tasks')
    this.#manifests = sub('manifests')
    this.#refs = sub('refs')
    this.#meta = sub('meta')
  }

  async start (): Promise<void> {
    // Not db.status: abstract-level opens the database on its own soon after construction.
    if (this.#started) return
    this.#started = true
    await this.#db.open()
    let replicaId = this.#signer == null ? await this.#meta.get('replica-id') : replicaIdOf(this.#signer.id)
    if (replicaId == null) {
      replicaId = randomBytes(8).toString('hex')
      await this.#meta.put('replica-id', replicaId)
    }
    this.#clock = new HybridClock(replicaId)
    for await (const [, record] of this.#records.iterator()) {
      this.#clock.observe(versionOf(record))
      this.#apply(record)
    }
    // Tasks written before they were replicated (kept in their own sublevel, this agent's only).
    for await (const [, task] of this.#tasks.iterator()) this.#cacheTask(task)
  }

  async stop (): Promise<void> {
    if (!this.#started) return
    this.#started = false
    await this.#writes
    await this.#db.close()
  }

  get replicaId (): string { return this.#clock.replicaId }

  // ---- MetadataStore: what the Glance domain reads and writes ----

  getImage (id: string): ImageRecord | undefined {
    return this.#images.get(id)
  }

  images (): Iterable<ImageRecord> {
    return this.#images.values()
  }

  async putImage (image: ImageRecord): Promise<void> {
    const record = this.#stampLocal('image', image.id, imageFields(image))
    if (record != null) await this.#persist([this.#recordOp(record)])
  }

  members (imageId: string): MemberRecord[] {
    return [...this.#members.get(imageId)?.values() ?? []]
  }

  async putMember (member: MemberRecord): Promise<void> {
    const record = this.#stampLocal('member', memberKey(member.image_id, member.member_id), memberFields(member), false)
    if (record != null) await this.#persist([this.#recordOp(record)])
  }

  async deleteMember (imageId: string, memberId: string): Promise<void> {
    const member = this.#members.get(imageId)?.get(memberId)
    if (member == null) return
    const record = this.#stampLocal('member', memberKey(imageId, memberId), memberFields(member, true), false)
    if (record != null) await this.#persist([this.#recordOp(record)])
  }

  tasks (imageId?: string): TaskRecord[] {
    if (imageId == null) return [...this.#taskCache.values()].flatMap(byId => [...byId.values()])
    return [...this.#taskCache.get(imageId)?.values() ?? []]
  }

  /** Tasks are replicated like images, so any agent's tasks API lists every agent's imports. */
  async putTask (task: TaskRecord): Promise<void> {
    const record = this.#stampLocal('task', taskKey(task.image_id, task.id), taskFields(task), false)
    if (record != null) await this.#persist([this.#recordOp(record)])
  }

  /** The image's manifest, if this agent holds the one the (replicated) image names. */
  async getManifest (imageId: string): Promise<Manifest | undefined> {
    const wanted = manifestCidOf(this.#state.get(`image!${imageId}`))
    if (wanted == null) return undefined
    const unwritten = this.#unwritten.get(imageId)
    const local = unwritten != null ? unwritten.manifest : await this.#manifests.get(imageId)
    return local?.cid === wanted ? local.manifest : undefined
  }

  /** The CID of the manifest the image names, known before the manifest itself is here. */
  manifestCidOf (imageId: string): string | null {
    return manifestCidOf(this.#state.get(`image!${imageId}`))
  }

  async dataAdded (image: ImageRecord, manifest: Manifest): Promise<void> {
    const cid = manifestCid(manifest)
    const record = this.#stampLocal('image', image.id, { ...imageFields(image), [MANIFEST_FIELD]: cid })
    this.#emitOrphans(await this.#replaceManifest(image.id, { cid, manifest }, record == null ? [] : [this.#recordOp(record)]))
  }

  async dataRemoved (image: ImageRecord): Promise<string[]> {
    const record = this.#stampLocal('image', image.id, { ...imageFields(image), [MANIFEST_FIELD]: null })
    return await this.#replaceManifest(image.id, undefined, record == null ? [] : [this.#recordOp(record)])
  }

  async manifestBytes (imageId: string): Promise<Uint8Array | undefined> {
    const manifest = await this.getManifest(imageId)
    return manifest == null ? undefined : encodeManifest(manifest)
  }

  /** Decodes a manifest fetched from a peer, and keeps it if it is still the one the image names. */
  async manifestArrived (imageId: string, bytes: Uint8Array): Promise<Manifest> {
    const manifest = decodeManifest(bytes)
    const cid = manifestCid(manifest)
    if (cid !== this.manifestCidOf(imageId)) return manifest
    this.#emitOrphans(await this.#replaceManifest(imageId, { cid, manifest }))
    return manifest
  }

  /**
   * Forgets this agent's copy of the image (cache eviction): its manifest and chunk references go,
   * the replicated record stays. Chunks no other manifest here names are reported as orphans.
   */
  async manifestDropped (imageId: string): Promise<void> {
    this.#emitOrphans(await this.#replaceManifest(imageId, undefined))
  }

  async isReferenced (cid: string): Promise<boolean> {
    // '"' sorts right after '!', so this range is exactly the keys starting with `<cid>!`.
    const keys = await this.#refs.keys({ gte: `${cid}!`, lt: `${cid}"`, limit: 1 }).all()
    return keys.length > 0
  }

  /** An image whose local manifest names the chunk (any one, when several share it). */
  async imageOfChunk (cid: string): Promise<string | undefined> {
    for (const [imageId, cids] of this.#knownChunks) if (cids.has(cid)) return imageId
    const changes = this.#manifestChanges
    const keys = await this.#refs.keys({ gte: `${cid}!`, lt: `${cid}"`, limit: 1 }).all()
    const imageId = keys[0]?.slice(cid.length + 1)
    if (imageId != null && !this.#knownChunks.has(imageId)) {
      const local = await this.#manifests.get(imageId)
      if (local != null && changes === this.#manifestChanges) this.#knowChunks(imageId, local.manifest.cids)
    }
    return imageId
  }

  #knowChunks (imageId: string, cids: readonly string[]): void {
    if (cids.length > MAX_KNOWN_CHUNKS) return
    const known = new Set(cids)
    this.#knownChunks.set(imageId, known)
    this.#knownCount += known.size
    for (const [oldest, chunks] of this.#knownChunks) {
      if (this.#knownCount <= MAX_KNOWN_CHUNKS) break
      this.#knownChunks.delete(oldest)
      this.#knownCount -= chunks.size
    }
  }

  #forgetKnownChunks (): void {
    this.#manifestChanges++
    this.#knownChunks.clear()
    this.#knownCount = 0
  }

  /** Every chunk some local manifest names. */
  async * referencedCids (): AsyncIterable<string> {
    let last = ''
    for await (const key of this.#refs.keys()) {
      const cid = key.slice(0, key.indexOf('!'))
      if (cid !== last) yield cid
      last = cid
    }
  }

  /** Chunks that no local manifest names any more after a merged change; the agent deletes them. */
  onOrphans (listener: (cids: string[]) => void): () => void {
    this.#orphanListeners.add(listener)
    return () => this.#orphanListeners.delete(listener)
  }

  metadefs (): Iterable<MetadefRecord> {
    return this.#metadefs.values()
  }

  async putMetadefs (records: readonly MetadefRecord[]): Promise<void> {
    const ops: BatchOp[] = []
    for (const metadef of records) {
      const record = this.#stampLocal('metadef', metadefKey(metadef.type, metadef.id), metadefFields(metadef), false)
      if (record != null) ops.push(this.#recordOp(record))
    }
    await this.#persist(ops)
  }

  // ---- Replica: what the mesh's metadata sync reads and merges ----

  records (): Iterable<ReplicatedRecord> {
    return this.#state.values()
  }

  versionOf (record: ReplicatedRecord): string {
    return versionOf(record)
  }

  get (kind: ReplicatedRecord['kind'], key: string): ReplicatedRecord | undefined {
    return this.#state.get(`${kind}!${key}`)
  }

  async merge (remote: readonly ReplicatedRecord[], from?: string): Promise<number> {
    const ops: BatchOp[] = []
    const changed: ReplicatedRecord[] = []
    const renamed: string[] = []
    for (const theirs of remote) {
      const ours = this.#state.get(`${theirs.kind}!${theirs.key}`)
      // A peer that holds a refused copy offers it again at every sync: judge it once.
      const seen = refusalKey(theirs)
      const earlier = seen == null ? undefined : this.#refused.get(seen)
      // Same clocks are not enough (a forger could reuse an honest write's): same content.
      if (earlier != null && earlier === contentHash(theirs)) continue
      const outcome = this.#accept(ours, theirs)
      if (typeof outcome === 'object' && 'reason' in outcome) {
        if (seen != null && outcome.reason !== 'clock') {
          this.#refused.set(seen, contentHash(theirs))
          if (this.#refused.size > MAX_REMEMBERED_REFUSALS) this.#refused.delete(this.#refused.keys().next().value!)
        }
        this.#reject({ ...outcome, kind: theirs.kind, key: theirs.key, ...from != null ? { from } : {} })
        continue
      }
      if (outcome == null) continue
      const record = outcome
      this.#clock.observe(versionOf(theirs))
      this.#apply(record)
      ops.push(this.#recordOp(record))
      if (record.kind === 'image' && manifestCidOf(ours) !== manifestCidOf(record)) {
        // The image now names other bytes (or none): the local manifest, if any, no longer applies.
        renamed.push(record.key)
      }
      changed.push(record)
    }
    if (ops.length === 0) return 0
    const orphans = await this.#persist(async () => [...ops, ...(await Promise.all(renamed.map(async id => await this.#manifestOps(id, undefined)))).flat()])
    // The stored copy, not the merged one: a local write may have landed on it while this batch
    // was written (and told its listeners then), and a listener keeps what it is told last.
    for (const record of changed) this.#emit(this.#state.get(`${record.kind}!${record.key}`) ?? record, 'remote')
    this.#emitOrphans(orphans)
    return changed.length
  }

  /** Records from peers that were not merged, and why (for logs and metrics). */
  onRejected (listener: (rejected: RejectedRecord) => void): () => void {
    this.#rejectedListeners.add(listener)
    return () => this.#rejectedListeners.delete(listener)
  }

  /**
   * The record after merging a peer's copy, undefined when nothing changes, or why it is refused:
   * shape, clocks not too far ahead, write-once data, signatures of the writes it brings, then
   * the domain's rules on the result. A refused copy changes nothing.
   */
  #accept (ours: ReplicatedRecord | undefined, theirs: ReplicatedRecord): ReplicatedRecord | undefined | Pick<RejectedRecord, 'reason' | 'detail'> {
    const malformed = malformedRecord(theirs)
    if (malformed != null) return { reason: 'invalid', detail: malformed }
    const ahead = wallOf(versionOf(theirs)) - Date.now()
    if (ahead > MAX_CLOCK_AHEAD_MS) return { reason: 'clock', detail: `clock ${versionOf(theirs)} is ${Math.round(ahead / 1000)} s ahead` }
    const merged = merge(ours, theirs)
    if ('refused' in merged) return { reason: 'write-once', detail: merged.refused }
    if (!merged.changed) return undefined
    const record = merged.record
    if (this.#signer != null) {
      const why = unsealed(ours, theirs, record, this.#signer)
      if (why != null) return { reason: 'signature', detail: why }
      record.w = sealsFor(record.kind, record.key, record.fields, [ours, theirs])
    }
    if (this.#rules != null) {
      const why = record.kind === 'image'
        ? this.#rules.imageRefusal(toImage(record), ours == null ? undefined : toImage(ours))
        : record.kind === 'metadef'
          ? this.#rules.metadefRefusal(toMetadef(record))
          : record.kind === 'task'
            ? this.#rules.taskRefusal(toTask(record))
          : record.fields.removed?.v === true ? undefined : this.#rules.memberRefusal(toMember(record)!)
      if (why != null) return { reason: 'invalid', detail: why }
    }
    return record
  }

  #reject (rejected: RejectedRecord): void {
    for (const listener of this.#rejectedListeners) listener(rejected)
  }

  onChange (listener: (record: ReplicatedRecord, origin: ChangeOrigin) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  // ---- internals ----

  #stampLocal (kind: ReplicatedRecord['kind'], key: string, fields: Record<string, unknown>, replaceProperties = true): ReplicatedRecord | undefined {
    const prev = this.#state.get(`${kind}!${key}`)
    const clock = this.#clock.tick()
    const record = stamp(prev, kind, key, fields, clock, replaceProperties)
    if (record == null) return undefined
    if (this.#signer != null) record.w = sealsFor(kind, key, record.fields, [prev], { clock, signer: this.#signer })
    this.#apply(record)
    this.#emit(record, 'local')
    return record
  }

  /** Updates the in-memory views from a record. */
  #apply (record: ReplicatedRecord): void {
    this.#state.set(`${record.kind}!${record.key}`, record)
    if (record.kind === 'image') {
      this.#images.set(record.key, toImage(record))
      return
    }
    if (record.kind === 'metadef') {
      this.#metadefs.set(record.key, toMetadef(record))
      return
    }
    if (record.kind === 'task') {
      this.#cacheTask(toTask(record))
      return
    }
    const member = toMember(record)
    const imageId = record.key.slice(0, record.key.indexOf('!'))
    const memberId = record.key.slice(imageId.length + 1)
    let byMember = this.#members.get(imageId)
    if (byMember == null) this.#members.set(imageId, byMember = new Map())
    if (member == null) byMember.delete(memberId)
    else byMember.set(memberId, member)
  }

  #recordOp (record: ReplicatedRecord): BatchOp {
    return { type: 'put', sublevel: this.#records, key: `${record.kind}!${record.key}`, value: record }
  }

  /** Writes `next` as the image's local manifest (with `ops`); returns the chunks no manifest names any more. */
  async #replaceManifest (imageId: string, next: LocalManifest | undefined, ops: BatchOp[] = []): Promise<string[]> {
    const decided = { manifest: next }
    this.#unwritten.set(imageId, decided)
    // Before and after the write: a lookup in between may have seen the chunk references of either.
    this.#forgetKnownChunks()
    try {
      return await this.#persist(async () => [...ops, ...await this.#manifestOps(imageId, next)], true)
    } finally {
      this.#forgetKnownChunks()
      if (this.#unwritten.get(imageId) === decided) this.#unwritten.delete(imageId)
    }
  }

  /**
   * Ops that replace the image's local manifest (and its chunk references) with `next`. Run in
   * the write queue: what is on disk then is what earlier writes left.
   */
  async #manifestOps (imageId: string, next: LocalManifest | undefined): Promise<BatchOp[]> {
    const current = await this.#manifests.get(imageId)
    if (current?.cid === next?.cid) return []
    const ops: BatchOp[] = []
    for (const cid of new Set(current?.manifest.cids ?? [])) ops.push({ type: 'del', sublevel: this.#refs, key: `${cid}!${imageId}` })
    if (next == null) {
      if (current != null) ops.push({ type: 'del', sublevel: this.#manifests, key: imageId })
    } else {
      ops.push({ type: 'put', sublevel: this.#manifests, key: imageId, value: next })
      for (const cid of new Set(next.manifest.cids)) ops.push({ type: 'put', sublevel: this.#refs, key: `${cid}!${imageId}`, value: '' })
    }
    return ops
  }

  /**
   * Writes a batch (or the batch `ops` makes once the writes before it are done); returns the
   * chunks whose last reference it removed.
   */
  async #persist (ops: BatchOp[] | (() => Promise<BatchOp[]>), sync = false): Promise<string[]> {
    if (Array.isArray(ops) && ops.length === 0) return []
    const written = await this.#write(async () => {
      const batch = Array.isArray(ops) ? ops : await ops()
      if (batch.length > 0) await this.#db.batch(batch as any, { sync })
      return batch
    })
    const dropped = new Set<string>()
    for (const op of written) {
      if (op.type === 'del' && op.sublevel === this.#refs) dropped.add(op.key.slice(0, op.key.indexOf('!')))
    }
    const orphans: string[] = []
    for (const cid of dropped) if (!await this.isReferenced(cid)) orphans.push(cid)
    return orphans
  }

  #emit (record: ReplicatedRecord, origin: ChangeOrigin): void {
    for (const listener of this.#listeners) listener(record, origin)
  }

  #emitOrphans (cids: string[]): void {
    if (cids.length === 0) return
    for (const listener of this.#orphanListeners) listener(cids)
  }

  #cacheTask (task: TaskRecord): void {
    let byId = this.#taskCache.get(task.image_id)
    if (byId == null) this.#taskCache.set(task.image_id, byId = new Map())
    byId.set(task.id, task)
  }

  /** Disk writes run one after another, in the order the (already applied) memory changes were made. */
  async #write<T> (op: () => Promise<T>): Promise<T> {
    const result = this.#writes.then(op)
    this.#writes = result.catch(() => {})
    return await result
  }
}
