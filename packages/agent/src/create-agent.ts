import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { FsChunkStore } from '@peerglance/chunk-store'
import { parseByteSize, parseListen } from '@peerglance/config'
import type { AgentConfig } from '@peerglance/config'
import { buildGlanceApi, noAuth } from '@peerglance/glance-api'
import { ImageDataService, ImageService, MemberService } from '@peerglance/glance-domain'
import type { GlanceRules } from '@peerglance/glance-domain'
import { LevelMetadataStore } from '@peerglance/metadata-store'
import { createLogger } from './logger.ts'

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
  readonly metadata: LevelMetadataStore
  readonly chunks: FsChunkStore
  readonly images: ImageService
  readonly data: ImageDataService
  readonly api: FastifyInstance
  #status: AgentStatus = 'stopped'
  #url: string | undefined

  constructor (config: AgentConfig, overrides: AgentOverrides = {}) {
    this.config = config
    this.log = overrides.logger ?? createLogger(config.log)
    this.metadata = new LevelMetadataStore({ path: join(config.dataDir, 'metadata') })
    this.chunks = new FsChunkStore({
      dir: join(config.dataDir, 'chunks'),
      chunkSize: config.chunks.chunkSize,
      writeConcurrency: config.chunks.writeConcurrency,
      logger: this.log.child({ component: 'chunk-store' })
    })
    const rules = glanceRules(config)
    let data: ImageDataService | undefined
    this.images = new ImageService({ metadata: this.metadata, events: { imageDeleted: async image => await data?.imageDeleted(image) } }, rules)
    this.data = data = new ImageDataService({ images: this.images, metadata: this.metadata, chunks: this.chunks })
    this.api = buildGlanceApi({
      images: this.images,
      data: this.data,
      members: new MemberService({ images: this.images, metadata: this.metadata }),
      authenticator: noAuth(config.auth.noauth),
      logger: this.log.child({ component: 'glance-api' })
    }, { rules, publicEndpoint: config.api.publicEndpoint, requestTimeoutMs: config.api.requestTimeoutMs })
  }

  get status (): AgentStatus { return this.#status }

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
      await this.metadata.start()
      started.push(this.metadata)
      await this.chunks.start()
      started.push(this.chunks)
      const recovered = await this.data.recover()
      const collected = await this.chunks.collect(this.chunks.listCids(), async cid => await this.metadata.isReferenced(cid))
      if (recovered > 0 || collected > 0) this.log.warn({ recovered, collected }, 'recovered interrupted uploads')
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
    await this.metadata.stop()
    this.#status = 'stopped'
    this.log.info('agent stopped')
  }
}

function glanceRules (config: AgentConfig): GlanceRules {
  const g = config.glance
  return {
    limitParamDefault: g.limitParamDefault,
    apiLimitMax: g.apiLimitMax,
    imagePropertyQuota: g.imagePropertyQuota,
    imageTagQuota: g.imageTagQuota,
    imageMemberQuota: g.imageMemberQuota,
    imageSizeCap: g.imageSizeCap,
    userStorageQuota: parseByteSize(g.userStorageQuota),
    diskFormats: g.diskFormats,
    containerFormats: g.containerFormats,
    enabledImportMethods: g.enabledImportMethods,
    requireImageFormatMatch: g.requireImageFormatMatch
  }
}
