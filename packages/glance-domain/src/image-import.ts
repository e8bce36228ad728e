import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { ConflictError, ForbiddenError, ImageGoneError, ImageNotFoundError, NotFoundError, ValidationError } from '@peerglance/interface'
import type { Identity, ImageConverter, ImageRecord, Logger, MetadataStore, RemoteGlance, RemoteImageRef, TaskRecord, WebSource } from '@peerglance/interface'
import type { ImageDataService } from './image-data.ts'
import type { ImageService } from './image-service.ts'
import { siteState, siteStates, withSite } from './sites.ts'
import type { SiteDirectory } from './sites.ts'
import { transition } from './status.ts'
import { isoSeconds, now } from './time.ts'
import { checkUpload, inspect } from './format-inspector.ts'
import { UUID_PATTERN } from './properties.ts'
import { uriRefusal } from './uri-filter.ts'
import type { UriFilter } from './uri-filter.ts'

/** The lock an import holds on its image (images.py import_image), shown as Glance shows it. */
export const IMPORT_TASK_PROPERTY = 'os_glance_import_task'
/** A lock whose task has not moved for this long is stale and may be taken (images.py _enforce_import_lock). */
const STALE_LOCK_MS = 60 * 60_000
/** Glance keeps a finished task this long (task_time_to_live, 48 h). */
const TASK_TTL_MS = 48 * 3600_000
const SITE_POLL_MS = 500
const DEFAULT_SITE_TIMEOUT_MS = 600_000

export interface ImportComponents {
  images: ImageService
  data: ImageDataService
  metadata: MetadataStore
  sites: SiteDirectory
  /** web-download's fetcher; without it web-download fails every task. */
  web?: WebSource
  /** glance-download's other Glance; without it glance-download fails every task. */
  remote?: RemoteGlance
  /** qemu-img, for `conversionFormat`. */
  converter?: ImageConverter
  logger?: Logger
}

export interface ImportInit {
  webFilter?: UriFilter
  /** How long a task waits for each target site to report its copy. */
  siteTimeoutMs?: number
  /** Disk format imports are converted to (Glance's image_conversion output_format); none: no conversion. */
  conversionFormat?: string | null
  /** Where an import naming no stores goes: this agent's site (Glance's default store) or every site. */
  defaultStores?: 'own' | 'all'
  /** Property prefixes glance-download copies from the source image (glance [glance_download_properties] extra_properties). */
  downloadProperties?: readonly string[]
}

/** Disk formats qemu-img converts, by their qemu names; others (ami, iso, ploop...) are imported as they are. */
const QEMU_FORMATS: Record<string, string> = { raw: 'raw', qcow2: 'qcow2', vmdk: 'vmdk', vdi: 'vdi', vhd: 'vpc', vhdx: 'vhdx' }

/** Glance's default [glance_download_properties] extra_properties. */
const DEFAULT_DOWNLOAD_PROPERTIES = ['hw_', 'trait:', 'os_distro', 'os_secure_boot', 'os_type']

export interface ImportOptions {
  requestId?: string
  /** The `X-Image-Meta-Store` header: one target store, the old way. */
  store?: string
  /** The caller's token, which glance-download asks the other Glance with (kept in memory only). */
  token?: string
}

interface ImportRequest {
  method: { name: string, uri?: unknown, [k: string]: unknown }
  stores?: unknown
  all_stores?: boolean
  all_stores_must_succeed?: boolean
}

/**
 * `POST /v2/images/{id}/import` (glance-api.md §12.2) run as Glance runs it: checked, then a
 * task (`api_image_import`) that holds the image's `os_glance_import_task` lock does the work in
 * the background. Stores are sites: the task writes the data here (web-download) or activates
 * what was staged (glance-direct), marks each target site `importing`, and waits for the agents
 * of those sites to report a complete copy (`SiteCopies`), as Glance waits for each store.
 */
export class ImportService {
  readonly #c: ImportComponents
  readonly #filter: UriFilter | undefined
  readonly #siteTimeoutMs: number
  readonly #downloadProperties: readonly string[]
  readonly #defaultStores: 'own' | 'all'
  readonly #conversionFormat: string | null

  constructor (components: ImportComponents, init: ImportInit = {}) {
    this.#c = components
    this.#filter = init.webFilter
    this.#siteTimeoutMs = init.siteTimeoutMs ?? DEFAULT_SITE_TIMEOUT_MS
    this.#downloadProperties = init.downloadProperties ?? DEFAULT_DOWNLOAD_PROPERTIES
    this.#defaultStores = init.defaultStores ?? 'own'
    this.#conversionFormat = init.conversionFormat ?? null
  }

  async import (who: Identity, id: string, body: unknown, opts: ImportOptions = {}): Promise<void> {
    const request = parseRequest(body, this.#c.images.rules.enabledImportMethods)
    const name = request.method.name
    // Only copy-image has its own rule; any other import writes the image (images.py import_image).
    const image = this.#c.images.authorized(who, id, name === 'copy-image' ? 'copy_image' : 'modify_image')
    requireStatus(image, name)
    if (image.container_format == null) throw new ConflictError('\'container_format\' needs to be set before import')
    if (image.disk_format == null) throw new ConflictError('\'disk_format\' needs to be set before import')
    if (name === 'web-download') {
      const why = typeof request.method.uri !== 'string' ? 'URI for web-download is missing' : this.#filter == null ? undefined : uriRefusal(request.method.uri, this.#filter)
      if (why != null) throw new ValidationError(`URI for web-download does not pass filtering: ${String(request.method.uri)}`)
    }
    if (name === 'glance-download') {
      const method = request.method
      if (!('glance_region' in method)) throw new ValidationError('\'glance_region\' needs to be set for glance-download import method')
      if (!('glance_image_id' in method)) throw new ValidationError('\'glance_image_id\' needs to be set for glance-download import method')
      if (typeof method.glance_image_id !== 'string' || !UUID_PATTERN.test(method.glance_image_id)) {
        throw new ValidationError(`Remote image id does not look like a UUID: ${String(method.glance_image_id)}`)
      }
      method.glance_service_interface ??= 'public'
    }
    let targets = this.#targets(request, opts.store)
    if (name === 'copy-image') {
      const held = siteStates(image)
      if (request.all_stores === true) {
        targets = targets.filter(site => held.get(site) !== 'active')
        // Glance answers 202 and does nothing when every store already has the image.
        if (targets.length === 0) return
      } else {
        const present = targets.find(site => held.get(site) === 'active')
        if (present != null) throw new ValidationError(`Image is already present at store '${present}'`)
      }
    }
    this.#checkLock(image)

    const task = this.#newTask(who, image, request, targets, opts.requestId)
    // Synchronous from the checks to here: a second import racing this one sees the lock.
    const current = this.#c.metadata.getImage(id) as ImageRecord
    let locked: ImageRecord = { ...current, properties: { ...current.properties, [IMPORT_TASK_PROPERTY]: task.id }, updated_at: now() }
    if (name !== 'copy-image') locked = this.#c.data.claim(transition(locked, 'importing'))
    for (const site of targets) locked = withSite(locked, site, 'importing')
    await this.#c.metadata.putImage(locked)
    await this.#c.metadata.putTask(task)
    // Glance answers 202 first and runs the import as an asynchronous task.
    setImmediate(() => { void this.#run(task, request, targets, opts.token) })
  }

  /**
   * After a crash (run once the data side has put interrupted imports back to `queued`): an image
   * back in `queued` whose lock names a task still `processing` was being imported by an agent
   * that is gone (a live import keeps its image `importing`), so its task fails, the lock goes and
   * the sites it was meant for are listed as failed. Returns how many tasks were ended.
   */
  async recover (): Promise<number> {
    let ended = 0
    for (const task of this.#c.metadata.tasks()) {
      if (task.status !== 'processing' && task.status !== 'pending') continue
      const image = this.#c.metadata.getImage(task.image_id)
      if (image?.status !== 'queued' || image.properties[IMPORT_TASK_PROPERTY] !== task.id) continue
      const targets = Array.isArray(task.input.backend) ? (task.input.backend as unknown[]).filter((s): s is string => typeof s === 'string') : []
      await this.#sitesFailed(task.image_id, targets)
      await this.#finish(task, { status: 'failure', result: null, message: 'The agent running this import stopped before it finished.' })
      ended++
    }
    return ended
  }

  /**
   * The tasks API's checks of a new task (tasks.py create): an `import` task's `import_from` must
   * be an http(s) URI that passes the web-download filter (validate_legacy_import_from_uri).
   */
  checkTask (task: Pick<TaskRecord, 'type' | 'input'>): void {
    if (task.type !== 'import') return
    const uri = task.input.import_from
    if (uri == null || uri === '') throw new ValidationError(`Invalid location: ${uri == null ? 'None' : ''}`)
    if (typeof uri !== 'string') throw new ValidationError(`Invalid location: ${JSON.stringify(uri)}`)
    if (/^(file|filesystem):\/\/\//.test(uri)) throw new ValidationError('File based imports are not allowed. Please use a non-local source of image data.')
    if (!/^https?:\/\//.test(uri)) throw new ValidationError('The given uri is not valid. Please specify a valid uri from the following list of supported uri [\'http\']')
    if (this.#filter != null && uriRefusal(uri, this.#filter) != null) throw new ValidationError(`URI for legacy import task does not pass filtering: ${uri}`)
  }

  /**
   * Runs a task of the tasks API in the background (Glance's `import` flow, base_import.py): it
   * creates an image from `image_properties` (no owner unless given, as Glance 25's task
   * executor makes it), fetches `import_from` into it as web-download does (same SSRF-safe fetch, hashing, cap
   * and inspection, this agent's site), and succeeds with `{image_id}`; on failure the image it
   * created is deleted again. An `api_image_import` has no image to import to here and fails.
   */
  startTask (who: Identity, task: TaskRecord): void {
    setImmediate(() => { void this.#runTask(who, task) })
  }

  async #runTask (who: Identity, pending: TaskRecord): Promise<void> {
    const task: TaskRecord = { ...pending, status: 'processing', updated_at: now() }
    let created: string | undefined
    try {
      await this.#c.metadata.putTask(task)
      if (task.type !== 'import') throw new ValidationError(typeof task.input.image_id === 'string' ? 'An api_image_import task runs through POST /v2/images/{image_id}/import.' : 'Missing required \'image_id\' field')
      if (this.#c.web == null) throw new NotFoundError('web-download is not available on this agent.')
      const properties = task.input.image_properties ?? {}
      if (typeof properties !== 'object' || Array.isArray(properties)) throw new ValidationError('image_properties must be an object')
      // Glance 25's task executor creates it without an owner (so every project finds it) unless
      // image_properties names one.
      const image = await this.#c.images.create(who, { owner: null, ...properties, id: task.image_id })
      created = image.id
      const importing = this.#c.data.claim(transition(image, 'importing'))
      await this.#c.metadata.putImage(importing)
      const source = await this.#c.web.open(task.input.import_from as string)
      await this.#c.data.importData(importing, source.body, { expectedSize: source.size })
      await this.#finish(task, { status: 'success', result: { image_id: image.id }, message: '' })
      this.#c.logger?.info({ imageId: image.id, task: task.id }, 'import task finished')
    } catch (err) {
      const message = (err as Error).message
      if (created != null) {
        await this.#c.data.importFailed(created).catch(() => {})
        await this.#c.images.delete(who, created).catch(() => {})
      }
      await this.#finish(task, { status: 'failure', result: null, message }).catch(() => {})
      this.#c.logger?.warn({ task: task.id, type: task.type, reason: message }, 'task failed')
    }
  }

  /** `GET /v2/images/{id}/tasks`: any refusal is a 404 (images.py get_task_info). */
  tasksOf (who: Identity, id: string): TaskRecord[] {
    try {
      this.#c.images.authorized(who, id, 'get_image')
    } catch (err) {
      if ((err as Error).name === ForbiddenError.name) throw new ImageNotFoundError(`No image found with ID ${id}`)
      throw err
    }
    return this.#c.metadata.tasks(id)
  }

  async #run (task: TaskRecord, request: ImportRequest, targets: string[], token: string | undefined): Promise<void> {
    const id = task.image_id
    const log = this.#c.logger
    try {
      const started = Date.now()
      const image = this.#c.metadata.getImage(id)
      if (image == null || image.status === 'deleted') throw new ImageGoneError('Image was deleted during import.')
      const name = request.method.name
      if (name === 'glance-direct') {
        if (this.#converts(image)) await this.#importConverted(image, this.#c.data.readStaged(id))
        else await this.#c.data.importStaged(image)
      } else if (name === 'web-download') {
        if (this.#c.web == null) throw new NotFoundError('web-download is not available on this agent.')
        const source = await this.#c.web.open(request.method.uri as string)
        if (this.#converts(image)) await this.#importConverted(image, source.body)
        else await this.#c.data.importData(image, source.body, { expectedSize: source.size })
      } else if (name === 'glance-download') {
        await this.#glanceDownload(image, request, token)
      }
      const failed = await this.#awaitSites(id, targets)
      const mustSucceed = request.all_stores_must_succeed !== false
      if (failed.length > 0 && mustSucceed) throw new Error(`Import to stores ${failed.join(', ')} failed.`)
      await this.#finish(task, { status: 'success', result: { image_id: id }, message: '' })
      log?.info({ imageId: id, task: task.id, method: name, sites: targets, ms: Date.now() - started }, 'import finished')
    } catch (err) {
      if (request.method.name !== 'copy-image') await this.#c.data.importFailed(id).catch(() => {})
      await this.#sitesFailed(id, targets).catch(() => {})
      await this.#finish(task, { status: 'failure', result: null, message: (err as Error).message }).catch(() => {})
      log?.warn({ imageId: id, task: task.id, method: request.method.name, reason: (err as Error).message }, 'import failed')
    }
  }

  /**
   * The other region's image: its formats and the properties Glance copies first (reverted if the
   * download then fails, as Glance's _ImportMetadata does), then its bytes, as an upload's.
   */
  async #glanceDownload (image: ImageRecord, request: ImportRequest, token: string | undefined): Promise<void> {
    const method = request.method
    if (this.#c.remote == null || token == null) throw new NotFoundError('glance-download needs the caller\'s Keystone token (auth.mode keystone).')
    const ref: RemoteImageRef = { region: String(method.glance_region), interface: String(method.glance_service_interface ?? 'public'), imageId: String(method.glance_image_id), token }
    const source = await this.#c.remote.image(ref)
    if (source.status !== 'active') throw new ConflictError(`Source image status should be active instead of ${String(source.status)}`)
    const copied = Object.entries(source).filter((e): e is [string, string] => typeof e[1] === 'string' && this.#downloadProperties.some(prefix => e[0].startsWith(prefix)))
    const { diskFormats, containerFormats } = this.#c.images.rules
    if (typeof source.disk_format !== 'string' || !diskFormats.includes(source.disk_format)) throw new ValidationError(`Source image disk_format ${String(source.disk_format)} is not accepted here`)
    if (typeof source.container_format !== 'string' || !containerFormats.includes(source.container_format)) throw new ValidationError(`Source image container_format ${String(source.container_format)} is not accepted here`)
    const before = this.#c.metadata.getImage(image.id)
    if (before?.status !== 'importing') throw new ImageGoneError('Image was deleted during import.')
    const described: ImageRecord = {
      ...before,
      disk_format: source.disk_format,
      container_format: source.container_format,
      properties: { ...before.properties, ...Object.fromEntries(copied) },
      updated_at: now()
    }
    await this.#c.metadata.putImage(described)
    try {
      const data = await this.#c.remote.data(ref)
      if (this.#converts(described)) await this.#importConverted(described, data.body)
      else await this.#c.data.importData(described, data.body, { expectedSize: typeof source.size === 'number' ? source.size : data.size })
    } catch (err) {
      const current = this.#c.metadata.getImage(image.id)
      if (current != null && current.status !== 'deleted') {
        const properties = { ...current.properties }
        for (const [key] of copied) {
          if (Object.hasOwn(before.properties, key)) properties[key] = before.properties[key]
          else delete properties[key]
        }
        await this.#c.metadata.putImage({ ...current, disk_format: before.disk_format, container_format: before.container_format, properties })
      }
      throw err
    }
  }

  /** Whether an import of this image is converted first (a qcow2 to raw, say; never the target format itself). */
  #converts (image: ImageRecord): boolean {
    const to = this.#conversionFormat
    return to != null && this.#c.converter != null && image.disk_format !== to && image.disk_format != null && Object.hasOwn(QEMU_FORMATS, image.disk_format) && Object.hasOwn(QEMU_FORMATS, to)
  }

  /**
   * Glance's image_conversion plugin: the source is inspected (its safety checks, and it must be
   * what its disk_format says), converted, and the result becomes the image's data with the
   * target disk_format, inspected again as any upload is. On failure the disk_format goes back.
   */
  async #importConverted (image: ImageRecord, source: AsyncIterable<Uint8Array>): Promise<void> {
    const from = image.disk_format as string
    const to = this.#conversionFormat as string
    const converted = await (this.#c.converter as ImageConverter).convert(source, {
      from: QEMU_FORMATS[from],
      to: QEMU_FORMATS[to],
      // The plugin requires the detected format to be the claimed one, whatever require_image_format_match says.
      check: (head, size, tail) => { checkUpload(from, 'bare', inspect(head, size, tail), { requireImageFormatMatch: true }) }
    })
    try {
      const current = this.#c.metadata.getImage(image.id)
      if (current?.status !== 'importing') throw new ImageGoneError('Image was deleted during import.')
      const target: ImageRecord = { ...current, disk_format: to, updated_at: now() }
      await this.#c.metadata.putImage(target)
      try {
        await this.#c.data.importData(target, converted.body, { expectedSize: converted.size })
      } catch (err) {
        const back = this.#c.metadata.getImage(image.id)
        if (back != null && back.status !== 'deleted') await this.#c.metadata.putImage({ ...back, disk_format: from })
        throw err
      }
    } finally {
      await converted.dispose()
    }
  }

  /**
   * Waits until every target site reports a copy or the time is up; sites still fetching then
   * are marked failed. Returns the sites that failed.
   */
  async #awaitSites (id: string, targets: readonly string[]): Promise<string[]> {
    const deadline = Date.now() + this.#siteTimeoutMs
    for (;;) {
      const image = this.#c.metadata.getImage(id)
      if (image == null || image.status === 'deleted') throw new ImageGoneError('Image was deleted during import.')
      const pending = targets.filter(site => siteState(image, site) === 'importing')
      if (pending.length === 0) return targets.filter(site => siteState(image, site) === 'failed')
      if (Date.now() >= deadline) {
        let marked = image
        for (const site of pending) marked = withSite(marked, site, 'failed')
        await this.#c.metadata.putImage(marked)
        return targets.filter(site => siteState(marked, site) === 'failed')
      }
      await sleep(SITE_POLL_MS)
    }
  }

  /** The target sites that hold no copy after a failed import are listed in os_glance_failed_import, as Glance lists its stores. */
  async #sitesFailed (id: string, targets: readonly string[]): Promise<void> {
    const image = this.#c.metadata.getImage(id)
    if (image == null || image.status === 'deleted') return
    let marked = image
    for (const site of targets) if (siteState(image, site) !== 'active') marked = withSite(marked, site, 'failed')
    if (marked !== image) await this.#c.metadata.putImage(marked)
  }

  /**
   * Ends the task and releases the image's lock in the same turn: the store shows each write at
   * once and writes them to disk in call order, so a client that sees the task end finds the lock
   * gone (Glance drops it before it fails the task; awaiting the task's disk write first left a
   * window, seen under load), and after a crash the task is never open while its lock is gone.
   */
  async #finish (task: TaskRecord, outcome: Pick<TaskRecord, 'status' | 'result' | 'message'>): Promise<void> {
    const at = new Date()
    const writes = [this.#c.metadata.putTask({ ...task, ...outcome, updated_at: isoSeconds(at), expires_at: isoSeconds(new Date(at.getTime() + TASK_TTL_MS)) })]
    const image = this.#c.metadata.getImage(task.image_id)
    if (image != null && image.properties[IMPORT_TASK_PROPERTY] === task.id) {
      const { [IMPORT_TASK_PROPERTY]: _, ...properties } = image.properties
      writes.push(this.#c.metadata.putImage({ ...image, properties }))
    }
    await Promise.all(writes)
  }

  /** The sites an import goes to (glance/common/utils.py get_stores_from_request); unknown ones are a 409. */
  #targets (request: ImportRequest, header: string | undefined): string[] {
    const known = this.#c.sites.known()
    let targets: string[]
    if (request.all_stores === true) {
      if (request.stores !== undefined || header != null) throw new ValidationError('All_stores parameter can\'t be used with x-image-meta-store header or stores parameter')
      targets = known
    } else if (request.stores !== undefined) {
      if (header != null) throw new ValidationError('Stores parameter and x-image-meta-store header can\'t be both specified')
      if (!Array.isArray(request.stores) || request.stores.some(s => typeof s !== 'string')) throw new ValidationError('\'stores\' must be a list of store identifiers')
      targets = [...new Set(request.stores as string[])]
    } else {
      targets = header != null ? [header] : this.#defaultStores === 'all' ? known : [this.#c.sites.own]
    }
    for (const site of targets) {
      if (!known.includes(site)) throw new ConflictError(`Unknown scheme '${site}' found in URI`)
    }
    return targets
  }

  /** Another import holds the lock and is alive: 409. A stale or finished one's lock is taken over. */
  #checkLock (image: ImageRecord): void {
    const holder = image.properties[IMPORT_TASK_PROPERTY]
    if (holder == null) return
    const task = this.#c.metadata.tasks(image.id).find(t => t.id === holder)
    if (task == null || (task.status !== 'processing' && task.status !== 'pending')) return
    if (Date.now() - Date.parse(task.updated_at) > STALE_LOCK_MS) return
    throw new ConflictError(`Image has active task ${holder}`)
  }

  #newTask (who: Identity, image: ImageRecord, request: ImportRequest, targets: string[], requestId?: string): TaskRecord {
    const at = now()
    return {
      id: randomUUID(),
      type: 'api_image_import',
      status: 'processing',
      owner: image.owner,
      image_id: image.id,
      request_id: requestId ?? null,
      user_id: who.userId,
      input: { image_id: image.id, import_req: request, backend: targets },
      result: null,
      message: '',
      created_at: at,
      updated_at: at,
      expires_at: null
    }
  }
}

/** The body checks of images.py RequestDeserializer._validate_import_body, with its messages. */
function parseRequest (body: unknown, enabled: readonly string[]): ImportRequest {
  if (body == null || typeof body !== 'object' || Array.isArray(body)) throw new ValidationError('Import request requires a \'method\' field.')
  const request = body as Record<string, unknown>
  const method = request.method
  if (method == null || typeof method !== 'object' || Array.isArray(method)) throw new ValidationError('Import request requires a \'method\' field.')
  const name = (method as Record<string, unknown>).name
  if (name === undefined) throw new ValidationError('Import request requires a \'name\' field.')
  if (typeof name !== 'string' || !enabled.includes(name)) throw new ValidationError(`Unknown import method name '${String(name)}'.`)
  for (const flag of ['all_stores_must_succeed', 'all_stores'] as const) {
    if (request[flag] !== undefined && typeof request[flag] !== 'boolean') throw new ValidationError(`'${flag}' must be boolean value only`)
  }
  return request as unknown as ImportRequest
}

/** What status each method starts from (images.py import_image). */
function requireStatus (image: ImageRecord, method: string): void {
  if (image.status === 'active' && method !== 'copy-image') throw new ConflictError('Image with status active cannot be target for import')
  if (image.status !== 'active' && method === 'copy-image') throw new ConflictError('Only images with status active can be targeted for copying')
  if (image.status !== 'queued' && (method === 'web-download' || method === 'glance-download')) {
    throw new ConflictError(`Image needs to be in 'queued' state to use '${method}' method`)
  }
  if (image.status !== 'uploading' && method === 'glance-direct') throw new ConflictError('Image needs to be staged before \'glance-direct\' method can be used')
}
