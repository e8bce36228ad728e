import { readFileSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { FsChunkStore } from '@peerglance/chunk-store'
import { KeystoneAuthenticator } from '@peerglance/auth-keystone'
import { ConfigError, parseByteSize, parseListen } from '@peerglance/config'
import type { AgentConfig } from '@peerglance/config'
import { buildGlanceApi, noAuth } from '@peerglance/glance-api'
import { CacheService, GlancePolicy, ImageDataService, ImageService, dropImageData, ImportService, MemberService, MetadefService, SiteCopies, StoreService, TaskService, replicationRules } from '@peerglance/glance-domain'
import type { GlanceRules } from '@peerglance/glance-domain'
import { LruImageCache } from '@peerglance/image-cache'
import { LevelMetadataStore } from '@peerglance/metadata-store'
import { HoldingsExchange, MetadataSync, PeerManifests, PeerRecordSigner, PrefetchOrders, createMesh, loadOrCreatePeerKey } from '@peerglance/mesh'
import type { Mesh } from '@peerglance/mesh'
import type { Authenticator } from '@peerglance/interface'
import { Counter, Registry, collectDefaultMetrics } from 'prom-client'
import { localHoldings } from './local-holdings.ts'
import { createLogger } from './logger.ts'
import { AuditLog } from './audit-log.ts'
import { opsRoutes } from './ops-routes.ts'
import { readOnlyUpstream, upstreamConfigured, upstreamOrigin, writeThrough } from './upstream-origin.ts'
import { CONVERT_DIR, QemuImgConverter } from './qemu-converter.ts'
import { KeystoneRemoteGlance } from './remote-glance.ts'
import { siteDirectory } from './site-directory.ts'
import { HttpWebSource } from './web-source.ts'

export interface AgentOverrides {
  logger?: Logger
}

export type AgentStatus = 'stopped' | 'starting' | 'started' | 'stopping'

/**
 * The composition root, the only place where concrete classes meet: builds one agent's whole
 * graph in dependency order, not started. The only I/O is reading (or, on first use, making) the
 * agent's peer key, its identity for the mesh and for signing records.
 */
export async function createAgent (config: AgentConfig, overrides: AgentOverrides = {}): Promise<Agent> {
  const log = overrides.logger ?? createLogger(config.log)
  const registry = new Registry()
  // The event loop's delay sampled once a second, not every 10 ms: prom-client's default woke an
  // idle agent 100 times a second (docs/benchmarks.md, "The agent at rest").
  collectDefaultMetrics({ register: registry, prefix: 'peerglance_', eventLoopMonitoringPrecision: 1000 })
  const rules: GlanceRules = { ...config.glance, userStorageQuota: parseByteSize(config.glance.userStorageQuota) }
  // In read-only mode, writes to images mirrored from the upstream are refused (a policy rule).
  const policy = new GlancePolicy(upstreamConfigured(config) && config.upstream.writes === 'read-only' ? readOnlyUpstream(config.policy) : config.policy)
  const https = tlsFiles(config)
  await mkdir(config.dataDir, { recursive: true })
  const peerKey = await loadOrCreatePeerKey(config.dataDir)

  // Stores.
  const signer = new PeerRecordSigner({ key: peerKey, revoked: config.mesh.revokedPeers })
  const metadata = new LevelMetadataStore({ path: join(config.dataDir, 'metadata'), signer, rules: replicationRules(rules) })
  const chunks = new FsChunkStore({
    dir: join(config.dataDir, 'chunks'),
    chunkSize: config.chunks.chunkSize,
    writeConcurrency: config.chunks.writeConcurrency,
    encryptionKeyFile: config.chunks.encryptionKeyFile,
    logger: log.child({ component: 'chunk-store' })
  })

  // The mesh: chunks from peers, manifests from peers, metadata replication, holdings for the dashboard.
  const mesh = await createMesh({
    chunks,
    local: chunks,
    getManifestBytes: async imageId => await metadata.manifestBytes(imageId),
    logger: log.child({ component: 'mesh' }),
    registry,
    imageOfChunk: async cid => await metadata.imageOfChunk(cid)
  }, {
    privateKey: peerKey,
    listen: config.mesh.listen,
    site: config.agent.site,
    bootstrap: config.mesh.bootstrap,
    mdns: config.mesh.mdns,
    bulkPort: config.mesh.bulkPort,
    membership: { secret: config.mesh.key, operator: config.mesh.operatorKey, credentialFile: config.mesh.credentialFile, revoked: config.mesh.revokedPeers },
    unavailableTimeoutMs: config.mesh.fetchTimeoutMs,
    manifestTimeoutMs: config.mesh.fetchTimeoutMs
  })
  const manifests = new PeerManifests({ book: metadata, peers: mesh })
  const sync = new MetadataSync({ libp2p: mesh.libp2p, replica: metadata, logger: log.child({ component: 'metadata-sync' }) }, {
    syncIntervalMs: config.mesh.syncIntervalMs
  })
  // Glance's use cases on image records; a deleted image's data goes with it.
  const images = new ImageService({
    metadata,
    policy,
    events: { imageDeleted: async image => { await dropImageData({ metadata, chunks }, image) } }
  }, rules)
  // The cloud's existing Glance, when there is one: its images mirrored into the mesh (deleted
  // through `images` when the upstream no longer has them), their bytes read through on first use.
  const upstream = upstreamOrigin(config, {
    metadata,
    chunks,
    libp2p: mesh.libp2p,
    deleteImage: async image => { await images.deleteUnchecked(image) },
    logger: log.child({ component: 'upstream' }),
    registry
  })

  // Where image bytes and manifests come from: peers, or the upstream for its images.
  const imageReader = upstream?.reader(mesh.reader) ?? mesh.reader
  const imageManifests = upstream?.manifests(manifests) ?? manifests
  const holdings = localHoldings({
    metadata,
    chunks,
    mesh,
    manifests: imageManifests,
    reader: imageReader,
    dataDir: config.dataDir,
    copiesElsewhere: upstream?.copies
  })
  const peerHoldings = new HoldingsExchange(mesh.libp2p, async () => (await holdings.held()).map(h => [h.imageId, h.size === 0 ? 1 : h.bytes / h.size]))

  // What this agent keeps.
  const cache = new LruImageCache({ holdings, transfers: mesh.metrics, logger: log.child({ component: 'image-cache' }) }, {
    statePath: join(config.dataDir, 'cache.json'),
    maxBytes: parseByteSize(config.cache.maxBytes) || null,
    maxDiskPercent: config.cache.maxDiskPercent,
    highWatermark: config.cache.highWatermark,
    lowWatermark: Math.min(config.cache.lowWatermark, config.cache.highWatermark),
    minReplicas: config.cache.minReplicas,
    reserveBytes: parseByteSize(config.cache.reserveBytes),
    sweepIntervalMs: config.cache.sweepIntervalMs,
    prefetchIntervalMs: config.cache.prefetchIntervalMs,
    prefetchTags: [...config.cache.prefetchTags]
  })

  const orders = new PrefetchOrders(mesh.libp2p, (imageId, from) => {
    log.info({ imageId, from }, 'prefetch ordered')
    cache.order(metadata.getImage(imageId), imageId)
  })

  // Glance's data use cases and API.
  const data = new ImageDataService({ images, metadata, chunks, reader: cache.reader(imageReader), manifests: imageManifests, room: cache }, { host: () => metadata.replicaId, site: config.agent.site })
  // Stores are sites: imports land on them, and this agent fetches what its site is sent.
  const sites = siteDirectory(config.agent.site, () => mesh.status === 'started' ? mesh.sites().keys() : [], () => metadata.images())
  const siteCopies = new SiteCopies({
    metadata,
    holder: { fetch: async (id, signal) => { await holdings.fetch(id, signal) }, keep: (id, kept) => { cache.pinForSite(id, kept) }, kept: () => cache.sitePinned(), drop: async id => { await cache.remove(id) } },
    logger: log.child({ component: 'site-copies' })
  }, { site: config.agent.site })
  const imports = new ImportService({
    images,
    data,
    metadata,
    sites,
    web: new HttpWebSource(config.import.webDownload),
    remote: config.auth.keystone.url == null ? undefined : new KeystoneRemoteGlance({ keystoneUrl: config.auth.keystone.url, serviceType: config.import.glanceDownload.serviceType }),
    converter: config.import.conversionFormat == null ? undefined : new QemuImgConverter({ tmpDir: join(config.dataDir, CONVERT_DIR) }),
    logger: log.child({ component: 'import' })
  }, {
    webFilter: config.import.webDownload,
    conversionFormat: config.import.conversionFormat,
    siteTimeoutMs: config.import.siteTimeoutMs,
    defaultStores: config.import.defaultStores,
    downloadProperties: config.import.glanceDownload.extraProperties
  })
  const audit = config.audit.file == null ? undefined : new AuditLog(config.audit.file)
  const api = buildGlanceApi({
    images,
    data,
    members: new MemberService({ images, metadata }),
    cache: new CacheService({ images, metadata, cache }),
    metadefs: new MetadefService({ metadata, policy }, rules),
    imports,
    stores: new StoreService({ images, metadata, sites }),
    tasks: new TaskService({ metadata, policy, runner: imports }),
    authenticator: authenticator(config, log),
    logger: log.child({ component: 'glance-api' }),
    audit
  }, { rules, publicEndpoint: config.api.publicEndpoint, requestTimeoutMs: config.api.requestTimeoutMs, https })

  // Reactions to metadata changes, local or replicated.
  metadata.onChange((record, origin) => {
    if (record.kind !== 'image') return
    const image = metadata.getImage(record.key)
    if (image != null) siteCopies.imageChanged(image)
    if (image != null && image.status !== 'deleted') {
      cache.imageChanged(image)
      return
    }
    cache.forget(record.key)
    // Stop any background download of a deleted image (a local delete has dropped its data by now).
    void mesh.forgetImage(record.key).catch(err => { log.warn({ err, imageId: record.key }, 'forgetting an image failed') })
  })
  metadata.onOrphans(cids => {
    void chunks.collect(cids, async cid => await metadata.isReferenced(cid)).catch(err => { log.warn({ err }, 'collecting chunks failed') })
  })
  const rejected = new Counter({ name: 'peerglance_records_rejected_total', help: 'Records from peers refused before merging, by reason (signature, invalid, write-once, clock)', labelNames: ['reason'], registers: [registry] })
  const rejectLog = log.child({ component: 'replication' })
  metadata.onRejected(r => {
    rejected.inc({ reason: r.reason })
    rejectLog.warn({ kind: r.kind, key: r.key, reason: r.reason, detail: r.detail, peer: r.from }, 'refused a record from a peer')
  })

  // After a crash: uploads that were running go back to `queued`, and chunks nothing names go.
  const recovery = {
    async start () {
      // Conversions a crash interrupted left their temporary files.
      await rm(join(config.dataDir, CONVERT_DIR), { recursive: true, force: true })
      const recovered = await data.recover() + await imports.recover()
      const collected = await chunks.collect(chunks.listCids(), async cid => await metadata.isReferenced(cid))
      if (recovered > 0 || collected > 0) log.warn({ recovered, collected }, 'recovered interrupted uploads')
    },
    async stop () {}
  }
  const agent = new Agent({
    config,
    log,
    metadata,
    chunks,
    mesh,
    api,
    audit,
    // Started in this order, stopped in reverse; the API listens last.
    components: [
      ...audit == null ? [] : [audit],
      metadata,
      chunks,
      recovery,
      mesh,
      cache,
      siteCopies,
      sync,
      peerHoldings,
      orders,
      ...upstream == null ? [] : [upstream]
    ]
  })
  if (upstream != null && config.upstream.writes === 'write-through') {
    writeThrough(api, upstream, log.child({ component: 'upstream' }))
  }
  opsRoutes(api, {
    registry,
    isAdmin: who => policy.isAdmin(who),
    cache,
    // Started means the stores opened and recovered, the mesh listens and the sync runs, in that order.
    readiness: () => ({ stores: agent.status === 'started', mesh: mesh.status === 'started' }),
    images: () => metadata.images(),
    manifest: async imageId => await metadata.getManifest(imageId),
    mesh,
    stateRoot: () => sync.stateRoot,
    upstream: upstream?.status,
    peerHoldings: async named => mesh.status === 'started' ? await peerHoldings.askAll(named) : [],
    orderPrefetch: async (imageId, agents) => { if (mesh.status === 'started') await orders.send({ image: imageId, agents }) }
  })
  return agent
}

export interface AgentParts {
  config: AgentConfig
  log: Logger
  metadata: LevelMetadataStore
  chunks: FsChunkStore
  mesh: Mesh
  api: FastifyInstance
  audit: AuditLog | undefined
  /** Started in this order, stopped in reverse. */
  components: Array<{ start: () => void | Promise<void>, stop: () => void | Promise<void> }>
}

/** One agent, built by `createAgent`: `start` opens the stores, recovers from any crash and listens. */
export class Agent {
  readonly config: AgentConfig
  readonly log: Logger
  readonly metadata: LevelMetadataStore
  readonly chunks: FsChunkStore
  readonly mesh: Mesh
  readonly api: FastifyInstance
  readonly #audit: AuditLog | undefined
  readonly #components: AgentParts['components']
  #status: AgentStatus = 'stopped'
  #url: string | undefined

  constructor (parts: AgentParts) {
    this.config = parts.config
    this.log = parts.log
    this.metadata = parts.metadata
    this.chunks = parts.chunks
    this.mesh = parts.mesh
    this.api = parts.api
    this.#audit = parts.audit
    this.#components = parts.components
  }

  get status (): AgentStatus { return this.#status }

  /** SIGHUP: reopen the files written by name (the audit log), after logrotate moved them. */
  reopenLogs (): void {
    this.#audit?.reopen()
  }

  /** Where the Glance API answers, once started. */
  get url (): string {
    if (this.#url == null) throw new Error('agent not started')
    return this.#url
  }

  async start (): Promise<void> {
    if (this.#status !== 'stopped') return
    this.#status = 'starting'
    const started: AgentParts['components'] = []
    try {
      for (const component of this.#components) {
        await component.start()
        started.push(component)
      }
      const { host, port } = parseListen(this.config.api.listen)
      this.#url = await this.api.listen({ host, port })
      this.#status = 'started'
      this.log.info({ url: this.#url, dataDir: this.config.dataDir }, 'agent started')
    } catch (err) {
      for (const component of started.reverse()) {
        try {
          await component.stop()
        } catch {}
      }
      this.#status = 'stopped'
      throw err
    }
  }

  /**
   * Stops in reverse order. New requests get 503 at once; uploads in flight are aborted (their
   * images go back to `queued`), since a multi-GB upload would outlast any grace period; downloads
   * get `shutdown.graceMs` to finish before their connections are cut.
   */
  async stop (): Promise<void> {
    if (this.#status !== 'started') return
    this.#status = 'stopping'
    const closing = this.api.close()
    await this.chunks.stop()
    let timer: NodeJS.Timeout | undefined
    const grace = new Promise<void>(resolve => { timer = setTimeout(resolve, this.config.shutdown.graceMs) })
    await Promise.race([closing, grace])
    clearTimeout(timer)
    this.api.server.closeAllConnections()
    await closing
    for (const component of [...this.#components].reverse()) await component.stop()
    this.#status = 'stopped'
    this.log.info('agent stopped')
  }
}

function authenticator (config: AgentConfig, log: Logger): Authenticator {
  const { mode, keystone, noauth } = config.auth
  if (mode === 'noauth') return noAuth(noauth)
  // loadConfig has checked that keystone mode has a url.
  return new KeystoneAuthenticator({ logger: log.child({ component: 'keystone' }) }, { ...keystone, url: keystone.url as string })
}

/** The API's certificate and key, read now so that a bad path stops the agent before it starts. */
function tlsFiles (config: AgentConfig): { cert: Buffer, key: Buffer } | undefined {
  const { cert, key } = config.api.tls
  if (cert == null || key == null) return undefined
  const read = (path: string, option: string): Buffer => {
    try {
      return readFileSync(path)
    } catch (err) {
      throw new ConfigError(`invalid config: ${option}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
    }
  }
  return { cert: read(cert, 'api.tls.cert'), key: read(key, 'api.tls.key') }
}
