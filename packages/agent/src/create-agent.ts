import { readFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { FsChunkStore } from '@peerglance/chunk-store'
import { KeystoneAuthenticator } from '@peerglance/auth-keystone'
import { ConfigError, parseByteSize, parseListen } from '@peerglance/config'
import type { AgentConfig } from '@peerglance/config'
import { buildGlanceApi, noAuth } from '@peerglance/glance-api'
import { CacheService, GlancePolicy, ImageDataService, ImageService, MemberService, replicationRules } from '@peerglance/glance-domain'
import type { GlanceRules } from '@peerglance/glance-domain'
import { LruImageCache } from '@peerglance/image-cache'
import type { Holdings } from '@peerglance/image-cache'
import { LevelMetadataStore, decodeManifest, encodeManifest } from '@peerglance/metadata-store'
import { HoldingsExchange, Mesh, MetadataSync, PeerRecordSigner, PrefetchOrders } from '@peerglance/mesh'
import type { Authenticator, ImageReader, Manifest } from '@peerglance/interface'
import { Counter, Registry, collectDefaultMetrics } from 'prom-client'
import { localHoldings } from './local-holdings.ts'
import { createLogger } from './logger.ts'
import { AuditLog } from './audit-log.ts'
import { opsRoutes } from './ops-routes.ts'

export interface AgentOverrides {
  logger?: Logger
}

export type AgentStatus = 'stopped' | 'starting' | 'started' | 'stopping'

/**
 * One agent, wired but not started: the composition root, the only place where concrete classes
 * meet. Construction does no I/O; `start` opens the stores, recovers from any crash and listens.
 */
export class Agent {
  readonly config: AgentConfig
  readonly log: Logger
  readonly signer: PeerRecordSigner
  readonly metadata: LevelMetadataStore
  readonly chunks: FsChunkStore
  readonly images: ImageService
  readonly data: ImageDataService
  readonly api: FastifyInstance
  readonly mesh: Mesh
  readonly cache: LruImageCache
  readonly registry = new Registry()
  #sync: MetadataSync | undefined
  #holdings: HoldingsExchange | undefined
  #orders: PrefetchOrders | undefined
  readonly #localHoldings: Holdings
  readonly #audit: AuditLog | undefined
  readonly #manifestFetches = new Map<string, Promise<Manifest | undefined>>()
  #status: AgentStatus = 'stopped'
  #url: string | undefined

  constructor (config: AgentConfig, overrides: AgentOverrides = {}) {
    this.config = config
    this.log = overrides.logger ?? createLogger(config.log)
    const rules: GlanceRules = { ...config.glance, userStorageQuota: parseByteSize(config.glance.userStorageQuota) }
    this.signer = new PeerRecordSigner({ dataDir: config.dataDir, revoked: config.mesh.revokedPeers })
    this.metadata = new LevelMetadataStore({ path: join(config.dataDir, 'metadata'), signer: this.signer, rules: replicationRules(rules) })
    this.chunks = new FsChunkStore({
      dir: join(config.dataDir, 'chunks'),
      chunkSize: config.chunks.chunkSize,
      writeConcurrency: config.chunks.writeConcurrency,
      encryptionKeyFile: config.chunks.encryptionKeyFile,
      logger: this.log.child({ component: 'chunk-store' })
    })
    collectDefaultMetrics({ register: this.registry, prefix: 'peerglance_' })
    this.mesh = new Mesh({
      chunks: this.chunks,
      local: this.chunks,
      getManifestBytes: async imageId => {
        const manifest = await this.metadata.getManifest(imageId)
        return manifest == null ? undefined : encodeManifest(manifest)
      },
      logger: this.log.child({ component: 'mesh' }),
      registry: this.registry
    }, {
      dataDir: config.dataDir,
      listen: config.mesh.listen,
      bootstrap: config.mesh.bootstrap,
      mdns: config.mesh.mdns,
      membership: { secret: config.mesh.key, operator: config.mesh.operatorKey, credentialFile: config.mesh.credentialFile, revoked: config.mesh.revokedPeers },
      unavailableTimeoutMs: config.mesh.fetchTimeoutMs,
      manifestTimeoutMs: config.mesh.fetchTimeoutMs
    })
    this.#localHoldings = localHoldings({
      metadata: this.metadata,
      chunks: this.chunks,
      mesh: this.mesh,
      manifest: async imageId => await this.metadata.getManifest(imageId) ?? await this.#fetchManifest(imageId),
      dataDir: config.dataDir
    })
    this.cache = new LruImageCache({
      holdings: this.#localHoldings,
      logger: this.log.child({ component: 'image-cache' })
    }, {
      statePath: join(config.dataDir, 'cache.json'),
      maxBytes: parseByteSize(config.cache.maxBytes) || null,
      maxDiskPercent: config.cache.maxDiskPercent,
      highWatermark: config.cache.highWatermark,
      lowWatermark: Math.min(config.cache.lowWatermark, config.cache.highWatermark),
      minReplicas: config.cache.minReplicas,
      reserveBytes: parseByteSize(config.cache.reserveBytes),
      sweepIntervalMs: config.cache.sweepIntervalMs,
      prefetchTags: [...config.cache.prefetchTags]
    })
    this.#audit = config.audit.file == null ? undefined : new AuditLog(config.audit.file)
    let data: ImageDataService | undefined
    this.images = new ImageService({
      metadata: this.metadata,
      policy: new GlancePolicy(config.policy),
      events: {
        imageDeleted: async image => {
          await data?.imageDeleted(image)
          await this.#forget(image.id)
        }
      }
    }, rules)
    this.data = data = new ImageDataService({
      images: this.images,
      metadata: this.metadata,
      chunks: this.chunks,
      reader: observed(this.mesh.reader, this.cache, new Counter({ name: 'peerglance_client_bytes_served_total', help: 'Image bytes sent to API clients', registers: [this.registry] })),
      manifests: { fetch: async imageId => await this.#fetchManifest(imageId) },
      room: this.cache
    }, { host: () => this.metadata.replicaId })
    this.metadata.onChange((record, origin) => {
      if (record.kind !== 'image') return
      const image = this.metadata.getImage(record.key)
      if (image == null || image.status === 'deleted') {
        this.cache.forget(record.key)
        // An image deleted on another agent: stop any background download of it here.
        if (origin === 'remote') void this.#forget(record.key)
        return
      }
      this.cache.imageChanged(image)
    })
    const rejected = new Counter({ name: 'peerglance_records_rejected_total', help: 'Records from peers refused before merging, by reason (signature, invalid, write-once, clock)', labelNames: ['reason'], registers: [this.registry] })
    const rejectLog = this.log.child({ component: 'replication' })
    this.metadata.onRejected(r => {
      rejected.inc({ reason: r.reason })
      rejectLog.warn({ kind: r.kind, key: r.key, reason: r.reason, detail: r.detail, peer: r.from }, 'refused a record from a peer')
    })
    this.metadata.onOrphans(cids => {
      void this.chunks.collect(cids, async cid => await this.metadata.isReferenced(cid)).catch(err => {
        this.log.warn({ err }, 'collecting chunks failed')
      })
    })
    this.api = buildGlanceApi({
      images: this.images,
      data: this.data,
      members: new MemberService({ images: this.images, metadata: this.metadata }),
      cache: new CacheService({ images: this.images, metadata: this.metadata, cache: this.cache }),
      authenticator: authenticator(config, this.log),
      logger: this.log.child({ component: 'glance-api' }),
      audit: this.#audit
    }, { rules, publicEndpoint: config.api.publicEndpoint, requestTimeoutMs: config.api.requestTimeoutMs, https: tlsFiles(config) })
    opsRoutes(this.api, {
      registry: this.registry,
      isAdmin: who => this.images.policy.isAdmin(who),
      cache: this.cache,
      // Started means the stores opened and recovered, the mesh listens and the sync runs, in that order.
      readiness: () => ({ stores: this.#status === 'started', mesh: this.mesh.status === 'started' }),
      images: () => this.metadata.images(),
      manifest: async imageId => await this.metadata.getManifest(imageId),
      mesh: this.mesh,
      stateRoot: () => this.#sync?.stateRoot,
      peerHoldings: async named => await this.#holdings?.askAll(named) ?? [],
      orderPrefetch: async (imageId, agents) => { await this.#orders?.send({ image: imageId, agents }) }
    })
  }

  async #forget (imageId: string): Promise<void> {
    if (this.mesh.status !== 'started') return
    await this.mesh.forgetImage(imageId).catch(err => { this.log.warn({ err, imageId }, 'forgetting an image failed') })
  }

  /**
   * One fetch per image at a time, however many downloads wait for it. It runs to its own timeout
   * rather than any one caller's signal, since the other callers still want it.
   */
  async #fetchManifest (imageId: string): Promise<Manifest | undefined> {
    let pending = this.#manifestFetches.get(imageId)
    if (pending == null) {
      pending = (async () => {
        const cid = this.metadata.manifestCidOf(imageId)
        if (cid == null) return undefined
        const manifest = decodeManifest(await this.mesh.fetchManifest(imageId, cid))
        await this.metadata.manifestArrived(imageId, manifest)
        return manifest
      })().finally(() => this.#manifestFetches.delete(imageId))
      this.#manifestFetches.set(imageId, pending)
    }
    return await pending
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
    const started: Array<{ stop: () => Promise<void> }> = []
    try {
      await mkdir(this.config.dataDir, { recursive: true })
      await this.signer.start()
      if (this.#audit != null) {
        await this.#audit.start()
        started.push(this.#audit)
      }
      await this.metadata.start()
      started.push(this.metadata)
      await this.chunks.start()
      started.push(this.chunks)
      const recovered = await this.data.recover()
      const collected = await this.chunks.collect(this.chunks.listCids(), async cid => await this.metadata.isReferenced(cid))
      if (recovered > 0 || collected > 0) this.log.warn({ recovered, collected }, 'recovered interrupted uploads')
      await this.mesh.start()
      started.push(this.mesh)
      await this.cache.start()
      started.push(this.cache)
      this.#sync = new MetadataSync({ libp2p: this.mesh.libp2p, replica: this.metadata, logger: this.log.child({ component: 'metadata-sync' }) }, {
        syncIntervalMs: this.config.mesh.syncIntervalMs
      })
      await this.#sync.start()
      started.push(this.#sync)
      this.#holdings = new HoldingsExchange(this.mesh.libp2p, async () => (await this.#localHoldings.held()).map(h => [h.imageId, h.size === 0 ? 1 : h.bytes / h.size]))
      await this.#holdings.start()
      started.push(this.#holdings)
      this.#orders = new PrefetchOrders(this.mesh.libp2p, (imageId, from) => {
        this.log.info({ imageId, from }, 'prefetch ordered')
        this.cache.order(this.metadata.getImage(imageId), imageId)
      })
      this.#orders.start()
      const { host, port } = parseListen(this.config.api.listen)
      this.#url = await this.api.listen({ host, port })
      this.#status = 'started'
      this.log.info({ url: this.#url, dataDir: this.config.dataDir }, 'agent started')
    } catch (err) {
      for (const component of started.reverse()) await component.stop().catch(() => {})
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
    this.#orders?.stop()
    await this.#holdings?.stop()
    await this.#sync?.stop()
    await this.cache.stop()
    await this.mesh.stop()
    await this.metadata.stop()
    await this.#audit?.stop()
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

/**
 * Counts the bytes a reader hands to API clients, and tells the cache which images are being read
 * (not evicted meanwhile; least recently read goes first) and which were read whole here.
 */
function observed (reader: ImageReader, cache: Pick<LruImageCache, 'reading' | 'complete'>, counter: Counter): ImageReader {
  return {
    async * read (imageId, manifest, start, end, opts) {
      const done = cache.reading(imageId)
      try {
        for await (const part of reader.read(imageId, manifest, start, end, opts)) {
          counter.inc(part.byteLength)
          yield part
        }
        if (start === 0 && end === manifest.size - 1) cache.complete(imageId)
      } finally {
        done()
      }
    }
  }
}
