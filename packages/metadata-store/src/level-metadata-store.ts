import { Level } from 'level'
import type { ImageRecord, Manifest, MemberRecord, MetadataStore, Startable, TaskRecord } from '@peerglance/interface'

export interface LevelMetadataStoreInit {
  /** Directory of the LevelDB database. */
  path: string
}

/** The part of abstract-level's sublevel API used here, typed by value. */
interface Sublevel<V> {
  get: (key: string) => Promise<V | undefined>
  put: (key: string, value: V) => Promise<void>
  del: (key: string) => Promise<void>
  iterator: () => AsyncIterable<[string, V]>
  keys: (range?: { gte?: string, lt?: string, limit?: number }) => AsyncIterable<string> & { all: () => Promise<string[]> }
}

/**
 * Image metadata in LevelDB, one sublevel per record kind. Images, members and tasks are small
 * and also held in memory, so reads are synchronous; manifests and chunk references stay on disk.
 * Writes are applied to memory at once and to disk in call order.
 */
export class LevelMetadataStore implements MetadataStore, Startable {
  readonly #db: Level<string, unknown>
  readonly #images: Sublevel<ImageRecord>
  readonly #members: Sublevel<MemberRecord>
  readonly #tasks: Sublevel<TaskRecord>
  readonly #manifests: Sublevel<Manifest>
  /** `<cid>!<imageId>` for each chunk an image's manifest names: answers "is this chunk used?" by prefix. */
  readonly #refs: Sublevel<string>
  readonly #imageCache = new Map<string, ImageRecord>()
  readonly #memberCache = new Map<string, Map<string, MemberRecord>>()
  readonly #taskCache = new Map<string, Map<string, TaskRecord>>()
  #writes: Promise<unknown> = Promise.resolve()

  constructor (init: LevelMetadataStoreInit) {
    this.#db = new Level<string, unknown>(init.path, { valueEncoding: 'json' })
    const sub = <V>(name: string): Sublevel<V> => this.#db.sublevel(name, { valueEncoding: 'json' }) as unknown as Sublevel<V>
    this.#images = sub('images')
    this.#members = sub('members')
    this.#tasks = sub('tasks')
    this.#manifests = sub('manifests')
    this.#refs = sub('refs')
  }

  async start (): Promise<void> {
    if (this.#db.status === 'open') return
    await this.#db.open()
    for await (const [, image] of this.#images.iterator()) this.#imageCache.set(image.id, image)
    for await (const [, member] of this.#members.iterator()) this.#cacheMember(member)
    for await (const [, task] of this.#tasks.iterator()) this.#cacheTask(task)
  }

  async stop (): Promise<void> {
    await this.#writes
    await this.#db.close()
  }

  getImage (id: string): ImageRecord | undefined {
    return this.#imageCache.get(id)
  }

  images (): Iterable<ImageRecord> {
    return this.#imageCache.values()
  }

  async putImage (image: ImageRecord): Promise<void> {
    this.#imageCache.set(image.id, image)
    await this.#write(async () => await this.#images.put(image.id, image))
  }

  members (imageId: string): MemberRecord[] {
    return [...this.#memberCache.get(imageId)?.values() ?? []]
  }

  async putMember (member: MemberRecord): Promise<void> {
    this.#cacheMember(member)
    await this.#write(async () => await this.#members.put(`${member.image_id}!${member.member_id}`, member))
  }

  async deleteMember (imageId: string, memberId: string): Promise<void> {
    this.#memberCache.get(imageId)?.delete(memberId)
    await this.#write(async () => await this.#members.del(`${imageId}!${memberId}`))
  }

  tasks (imageId: string): TaskRecord[] {
    return [...this.#taskCache.get(imageId)?.values() ?? []]
  }

  async putTask (task: TaskRecord): Promise<void> {
    this.#cacheTask(task)
    await this.#write(async () => await this.#tasks.put(`${task.image_id}!${task.id}`, task))
  }

  async getManifest (imageId: string): Promise<Manifest | undefined> {
    return await this.#manifests.get(imageId)
  }

  async dataAdded (image: ImageRecord, manifest: Manifest): Promise<void> {
    this.#imageCache.set(image.id, image)
    const refs = new Set(manifest.cids)
    await this.#write(async () => await this.#db.batch([
      { type: 'put', sublevel: this.#manifests, key: image.id, value: manifest },
      ...[...refs].map(cid => ({ type: 'put' as const, sublevel: this.#refs, key: `${cid}!${image.id}`, value: '' })),
      { type: 'put', sublevel: this.#images, key: image.id, value: image }
    ] as any, { sync: true }))
  }

  async dataRemoved (image: ImageRecord): Promise<string[]> {
    this.#imageCache.set(image.id, image)
    const manifest = await this.#manifests.get(image.id)
    const cids = [...new Set(manifest?.cids ?? [])]
    await this.#write(async () => await this.#db.batch([
      { type: 'del', sublevel: this.#manifests, key: image.id },
      ...cids.map(cid => ({ type: 'del' as const, sublevel: this.#refs, key: `${cid}!${image.id}` })),
      { type: 'put', sublevel: this.#images, key: image.id, value: image }
    ] as any, { sync: true }))
    const orphans: string[] = []
    for (const cid of cids) if (!await this.isReferenced(cid)) orphans.push(cid)
    return orphans
  }

  async isReferenced (cid: string): Promise<boolean> {
    // '"' sorts right after '!', so this range is exactly the keys starting with `<cid>!`.
    const keys = await this.#refs.keys({ gte: `${cid}!`, lt: `${cid}"`, limit: 1 }).all()
    return keys.length > 0
  }

  /** Every chunk some manifest names, for the startup sweep. */
  async * referencedCids (): AsyncIterable<string> {
    let last = ''
    for await (const key of this.#refs.keys()) {
      const cid = key.slice(0, key.indexOf('!'))
      if (cid !== last) yield cid
      last = cid
    }
  }

  #cacheMember (member: MemberRecord): void {
    let byMember = this.#memberCache.get(member.image_id)
    if (byMember == null) this.#memberCache.set(member.image_id, byMember = new Map())
    byMember.set(member.member_id, member)
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
