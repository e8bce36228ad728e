import type { ImageRecord, ImageStatus, Logger, MemberRecord, MemberStatus, Visibility } from '@peerglance/interface'
import type { GlanceClient, UpstreamImage, UpstreamMember } from './glance-client.ts'
import { rank } from './rendezvous.ts'

/** Marks a record as the mirror of an upstream image (hidden, and reserved: no user can set it). */
export const UPSTREAM_PROPERTY = 'os_glance_upstream'

/** What the mirror writes to: the agent's metadata store, as local (signed, replicated) writes. */
export interface MirrorStore {
  images: () => Iterable<ImageRecord>
  getImage: (id: string) => ImageRecord | undefined
  putImage: (image: ImageRecord) => Promise<void>
  members: (imageId: string) => MemberRecord[]
  putMember: (member: MemberRecord) => Promise<void>
  deleteMember: (imageId: string, memberId: string) => Promise<void>
  /** The image is gone upstream: tombstone it and drop its data, as a delete through the API. */
  deleteImage: (image: ImageRecord) => Promise<void>
}

/** The mesh as the mirror sees it: who else there is, and a topic for the pollers' heartbeat. */
export interface MirrorPeers {
  /** This agent's peer id. */
  readonly self: string
  /** Peer ids of the other agents this one knows of (not only those connected). */
  known: () => Promise<string[]>
  publish: (message: Uint8Array) => Promise<void>
  /** Heartbeats from other agents; returns an unsubscribe function. */
  onMessage: (handler: (message: Uint8Array) => void) => () => void
}

export interface MirrorInit {
  /** Identifies the upstream in the rendezvous key, so two meshes' pollers differ per upstream. */
  upstream: string
  intervalMs: number
  pollers: number
}

const MEMBER_READS_AT_ONCE = 8

/** Glance's base attributes that are not extra properties, and what its views add. */
const NOT_PROPERTIES = new Set([
  'id', 'name', 'status', 'visibility', 'protected', 'os_hidden', 'owner', 'checksum', 'os_hash_algo', 'os_hash_value', 'size',
  'virtual_size', 'container_format', 'disk_format', 'min_ram', 'min_disk', 'tags', 'created_at', 'updated_at', 'self', 'file',
  'schema', 'direct_url', 'locations', 'stores'
])

/** The upstream's view of an image as our record, marked as mirrored. */
export function toRecord (u: UpstreamImage): ImageRecord {
  const str = (v: unknown): string | null => typeof v === 'string' ? v : null
  const num = (v: unknown): number | null => typeof v === 'number' ? v : null
  const properties: Record<string, string | null> = {}
  for (const [key, value] of Object.entries(u)) {
    if (NOT_PROPERTIES.has(key) || key.startsWith('os_glance')) continue
    properties[key] = typeof value === 'string' ? value : JSON.stringify(value)
  }
  properties[UPSTREAM_PROPERTY] = 'true'
  return {
    id: u.id,
    name: str(u.name),
    status: u.status as ImageStatus,
    visibility: (str(u.visibility) ?? 'shared') as Visibility,
    protected: u.protected === true,
    os_hidden: u.os_hidden === true,
    owner: str(u.owner),
    checksum: str(u.checksum),
    os_hash_algo: str(u.os_hash_algo),
    os_hash_value: str(u.os_hash_value),
    size: num(u.size),
    virtual_size: num(u.virtual_size),
    container_format: str(u.container_format),
    disk_format: str(u.disk_format),
    min_ram: num(u.min_ram) ?? 0,
    min_disk: num(u.min_disk) ?? 0,
    tags: Array.isArray(u.tags) ? u.tags.filter((t): t is string => typeof t === 'string').sort() : [],
    created_at: str(u.created_at) ?? u.updated_at,
    updated_at: u.updated_at,
    properties
  }
}

export function isMirrored (image: ImageRecord): boolean {
  return image.properties[UPSTREAM_PROPERTY] === 'true'
}

/** Equal fields, whatever the order of keys (the metadata store gives them back in its own). */
function sameRecord (a: ImageRecord, b: ImageRecord): boolean {
  const canonical = (r: ImageRecord): string => JSON.stringify(Object.entries({ ...r, tags: [...r.tags].sort(), properties: Object.entries(r.properties).sort() }).sort())
  return canonical(a) === canonical(b)
}

export interface RefreshResult { images: number, written: number, deleted: number }

/**
 * Keeps the mesh's copy of the upstream's image metadata fresh. Only the few agents ranked first
 * for the upstream by rendezvous hashing over the agents they know poll it (`pollers`); their
 * writes reach everyone else by the ordinary replication, so the upstream sees the same load
 * whatever the mesh's size. Each poller announces every refresh on the mesh (a heartbeat); when
 * none was heard for a while, the next agents in rank take over, one more per interval.
 */
export class UpstreamMirror {
  readonly #client: GlanceClient
  readonly #store: MirrorStore
  readonly #peers: MirrorPeers
  readonly #init: MirrorInit
  readonly #log: Logger
  #timer: NodeJS.Timeout | undefined
  #unsubscribe: (() => void) | undefined
  #running: Promise<RefreshResult | undefined> | undefined
  /** When the upstream's list was last read whole, here or (by heartbeat) by a poller. */
  lastRefresh: number | undefined
  /** Why the last refresh here failed, while it is the latest outcome. */
  lastError: string | undefined
  /** Refreshes this agent completed itself (a poller's count grows, the others' stay put). */
  refreshes = 0
  #startedAt = Date.now()

  constructor (components: { client: GlanceClient, store: MirrorStore, peers: MirrorPeers, logger: Logger }, init: MirrorInit) {
    this.#client = components.client
    this.#store = components.store
    this.#peers = components.peers
    this.#log = components.logger
    this.#init = init
  }

  start (): void {
    this.#startedAt = Date.now()
    this.#unsubscribe = this.#peers.onMessage(message => {
      try {
        const at = Date.parse((JSON.parse(new TextDecoder().decode(message)) as { refreshed?: string }).refreshed ?? '')
        // A heartbeat from the future is not believed beyond now.
        if (Number.isFinite(at)) this.lastRefresh = Math.max(this.lastRefresh ?? 0, Math.min(at, Date.now()))
      } catch {}
    })
    this.#schedule(0)
  }

  async stop (): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#unsubscribe?.()
    await this.#running?.catch(() => {})
  }

  /** This agent's rank among the agents it knows (0 polls first). */
  async rank (): Promise<number> {
    return rank(this.#init.upstream, [this.#peers.self, ...await this.#peers.known()]).indexOf(this.#peers.self)
  }

  /** Whether this agent polls now: it ranks among the pollers, or the pollers have been silent too long. */
  async isPoller (): Promise<boolean> {
    const r = await this.rank()
    if (r < this.#init.pollers) return true
    const silentFor = Date.now() - (this.lastRefresh ?? this.#startedAt)
    return silentFor > (3 + r - this.#init.pollers) * this.#init.intervalMs
  }

  #schedule (delay: number): void {
    this.#timer = setTimeout(() => {
      void (async () => {
        if (await this.isPoller().catch(() => false)) await this.refresh().catch(() => {})
        if (this.#timer != null) this.#schedule(this.#init.intervalMs * (1 + Math.random() * 0.1))
      })()
    }, delay)
  }

  /** Reads the upstream's whole list once and writes what differs; one refresh at a time. */
  async refresh (): Promise<RefreshResult | undefined> {
    this.#running ??= this.#refresh().finally(() => { this.#running = undefined })
    return await this.#running
  }

  async #refresh (): Promise<RefreshResult | undefined> {
    // What a list can say is gone: images mirrored before it was asked for. One that arrives while
    // it is read (another poller mirrored it from a newer list, and it replicated here) is not in
    // it, and its deletion would be a tombstone that wins over the upstream's image for good.
    const before = new Set<string>()
    for (const image of this.#store.images()) if (image.status !== 'deleted' && isMirrored(image)) before.add(image.id)
    let upstream: UpstreamImage[]
    try {
      upstream = await this.#client.listImages()
    } catch (err) {
      this.lastError = (err as Error).message
      this.#log.warn({ err: { message: this.lastError } }, 'upstream refresh failed')
      return undefined
    }
    let written = 0
    let deleted = 0
    const seen = new Set<string>()
    const shared: string[] = []
    for (const u of upstream) {
      if (typeof u?.id !== 'string' || typeof u.updated_at !== 'string') continue
      seen.add(u.id)
      const next = toRecord(u)
      const local = this.#store.getImage(u.id)
      if (local?.status === 'deleted') continue
      if (local == null || !sameRecord(local, next)) {
        await this.#store.putImage(next)
        written++
      }
      if (next.visibility === 'shared') shared.push(u.id)
    }
    // Glance's list does not show members, and a membership change leaves the image's updated_at
    // alone: every shared image's members are read, a few at a time.
    for (let i = 0; i < shared.length; i += MEMBER_READS_AT_ONCE) {
      for (const n of await Promise.all(shared.slice(i, i + MEMBER_READS_AT_ONCE).map(async id => await this.#mirrorMembers(id)))) written += n
    }
    // Only a whole list says what is gone.
    for (const id of before) {
      const image = this.#store.getImage(id)
      if (image == null || image.status === 'deleted' || !isMirrored(image) || seen.has(id)) continue
      await this.#store.deleteImage(image)
      deleted++
    }
    const now = Date.now()
    this.lastRefresh = now
    this.lastError = undefined
    this.refreshes++
    void this.#peers.publish(new TextEncoder().encode(JSON.stringify({ refreshed: new Date(now).toISOString() }))).catch(() => {})
    if (written > 0 || deleted > 0) this.#log.info({ images: upstream.length, written, deleted }, 'mirrored the upstream')
    return { images: upstream.length, written, deleted }
  }

  /**
   * Mirrors one image now, as the upstream shows it (after a write through to it): written when it
   * differs, members read when shared, deleted when the upstream no longer has it.
   */
  async refreshImage (imageId: string): Promise<void> {
    const u = await this.#client.image(imageId)
    const local = this.#store.getImage(imageId)
    if (u == null) {
      if (local != null && local.status !== 'deleted' && isMirrored(local)) await this.#store.deleteImage(local)
      return
    }
    if (local?.status === 'deleted') return
    const next = toRecord(u)
    if (local == null || !sameRecord(local, next)) await this.#store.putImage(next)
    if (next.visibility === 'shared') await this.#mirrorMembers(imageId)
  }

  async #mirrorMembers (imageId: string): Promise<number> {
    let theirs: UpstreamMember[]
    try {
      theirs = await this.#client.members(imageId)
    } catch (err) {
      this.#log.warn({ imageId, err: { message: (err as Error).message } }, 'reading upstream members failed')
      return 0
    }
    let written = 0
    const ours = new Map(this.#store.members(imageId).map(m => [m.member_id, m]))
    for (const m of theirs) {
      const local = ours.get(m.member_id)
      ours.delete(m.member_id)
      const next: MemberRecord = { image_id: imageId, member_id: m.member_id, status: m.status as MemberStatus, created_at: m.created_at, updated_at: m.updated_at }
      if (local != null && local.status === next.status && local.created_at === next.created_at && local.updated_at === next.updated_at) continue
      await this.#store.putMember(next)
      written++
    }
    for (const gone of ours.keys()) {
      await this.#store.deleteMember(imageId, gone)
      written++
    }
    return written
  }
}
