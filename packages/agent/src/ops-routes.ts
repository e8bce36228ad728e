import { readFile } from 'node:fs/promises'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Counter, Gauge } from 'prom-client'
import type { Registry } from 'prom-client'
import { readJson } from '@peerglance/glance-api'
import { ForbiddenError, ImageNotFoundError, ValidationError } from '@peerglance/interface'
import type { Identity, ImageRecord, Manifest } from '@peerglance/interface'

/** What the status document says about the mesh; absent when the agent runs alone. */
export interface MeshView {
  readonly peerId: string
  readonly multiaddrs: string[]
  connectedPeers: () => string[]
  localShare: (manifest: Manifest) => Promise<number>
  /** Images being fetched from peers now: chunks held of all. */
  transfers: () => Array<{ imageId: string, held: number, chunks: number }>
}

/** What the status document says about the upstream Glance (issue 11): `lastRefresh` is ISO 8601, null before the first. */
export interface UpstreamView { upstream: string, writes: string, lastRefresh: string | null, lastError: string | null, refreshesHere: number }

export interface OpsComponents {
  registry: Registry
  cache: {
    pin: (imageId: string, pinned: boolean) => void
    /** Fetches the image here now (Glance's cache-queue waits for the prefetcher's next pass). */
    fetchNow: (imageId: string) => void
    isPinned: (imageId: string) => boolean
    /** Kept for this agent's site (an import or copy-image placed it there). */
    isSitePinned: (imageId: string) => boolean
    usage: () => Promise<{ used: number, max: number, free: number }>
    readonly stats: { evictions: number, evictedBytes: number }
  }
  images: () => Iterable<ImageRecord>
  manifest: (imageId: string) => Promise<Manifest | undefined>
  mesh?: MeshView
  /** Whether each part the API depends on is running (readiness, apart from /healthcheck's liveness). */
  readiness: () => Record<string, boolean>
  /** What the peers named, or else every connected peer, say they hold (image id → share), for the coverage view. */
  peerHoldings: (named?: readonly string[]) => Promise<Array<{ peer: string, images?: Record<string, number>, error?: string }>>
  /** Orders the agents named (peer ids, or 'all', this one included) to fetch the image now. */
  orderPrefetch?: (imageId: string, agents: 'all' | string[]) => Promise<void>
  /** The root of the replicated state's digest (metadata-sync), once the mesh runs. */
  stateRoot?: () => string | undefined
  /** The upstream Glance, when there is one: where, how writes go, and when its list was last read whole. */
  upstream?: () => UpstreamView
  /** Who counts as an admin: the access policy's `context_is_admin`, so an operator's override holds here too. */
  isAdmin: (who: Identity) => boolean
}

/**
 * The agent's own API beside Glance's: `/peerglance/v1/status` for operators and Prometheus
 * `/metrics`, pins and the dashboard. They name every image, private ones too, so they answer only
 * an admin: the request is authenticated like any Glance call (a Keystone token, or noauth's
 * headers; a headerless noauth request is the configured admin, so the dashboard works there).
 */
export function opsRoutes (root: FastifyInstance, c: OpsComponents): void {
  registerCacheMetrics(c.registry, c.cache)
  // Its own encapsulation context, so the admin check covers these routes only.
  void root.register(async app => { routes(app, c) })
  dashboard(root)
}

/**
 * A live view of the routes below for operators: one static page that polls status, coverage and
 * metrics with the caller's credentials (with Keystone, an admin token typed into the page). The
 * page holds no data, so it is served to anyone.
 */
function dashboard (app: FastifyInstance): void {
  let page: Promise<string> | undefined
  app.get('/peerglance/v1/dashboard', async (_request, reply) => {
    page ??= readFile(new URL('./dashboard.html', import.meta.url), 'utf8')
    return await reply.type('text/html; charset=utf-8').header('content-security-policy', "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'").send(await page)
  })
}

function routes (app: FastifyInstance, c: OpsComponents): void {
  app.addHook('onRequest', async (request: FastifyRequest) => {
    if (!c.isAdmin(request.identity)) throw new ForbiddenError('Only an admin may use the agent\'s status, metrics, pins and dashboard.')
  })

  app.get('/peerglance/v1/status', async () => {
    const images = []
    for (const image of c.images()) {
      if (image.status === 'deleted') continue
      const manifest = await c.manifest(image.id)
      const chunks = manifest?.cids.length ?? null
      // Without the manifest here this agent has never read the image, so it holds none of it.
      let localShare: number | null = image.size == null ? null : 0
      if (manifest != null) localShare = c.mesh == null ? 1 : await c.mesh.localShare(manifest)
      images.push({ id: image.id, name: image.name, status: image.status, size: image.size, chunks, localShare, pinned: c.cache.isPinned(image.id), sitePinned: c.cache.isSitePinned(image.id) })
    }
    return {
      peerId: c.mesh?.peerId ?? null,
      multiaddrs: c.mesh?.multiaddrs ?? [],
      peers: c.mesh?.connectedPeers() ?? [],
      stateRoot: c.stateRoot?.() ?? null,
      cache: await cacheView(c.cache),
      transfers: c.mesh?.transfers() ?? [],
      upstream: c.upstream?.() ?? null,
      images
    }
  })

  // Pinned images are never evicted from this agent's cache.
  for (const [method, pinned] of [['PUT', true], ['DELETE', false]] as const) {
    app.route<{ Params: { imageId: string } }>({
      method,
      url: '/peerglance/v1/pins/:imageId',
      handler: async (request, reply) => {
        const { imageId } = request.params
        if (![...c.images()].some(i => i.id === imageId && i.status !== 'deleted')) throw new ImageNotFoundError(`No image found with ID ${imageId}`)
        c.cache.pin(imageId, pinned)
        return await reply.code(204).send()
      }
    })
  }

  // Readiness for supervisors and load balancers: 200 once the stores are open and the mesh runs,
  // 503 naming what is not; Glance's /healthcheck says only that the process answers.
  app.get('/peerglance/v1/ready', async (_request, reply) => {
    const parts = c.readiness()
    return await reply.code(Object.values(parts).every(Boolean) ? 200 : 503).send(parts)
  })


  // Each image's share on this agent and on every connected peer, or on the peers named in
  // `?agents=ID,ID` (as the peers say).
  app.get<{ Querystring: { agents?: string } }>('/peerglance/v1/coverage', async request => {
    const named = request.query.agents?.split(',').filter(id => id !== '')
    if (named != null && named.length > MAX_NAMED_AGENTS) throw new ValidationError(`At most ${MAX_NAMED_AGENTS} agents may be named.`)
    const here: Record<string, number> = {}
    for (const image of c.images()) {
      if (image.status === 'deleted' || image.size == null) continue
      const manifest = await c.manifest(image.id)
      if (manifest != null) here[image.id] = c.mesh == null ? 1 : await c.mesh.localShare(manifest)
    }
    return { agents: [{ peer: c.mesh?.peerId ?? null, self: true, images: here }, ...await c.peerHoldings(named)] }
  })

  // `peerglance prefetch IMAGE [--agents all|ID…]`: this agent, or the agents named, fetch an
  // active image now.
  app.post('/peerglance/v1/prefetch', async (request, reply) => {
    const { image_id: imageId, agents } = (await readJson(request) ?? {}) as Record<string, unknown>
    if (typeof imageId !== 'string') throw new ValidationError('image_id must be a string.')
    if (agents !== undefined && agents !== 'all' && !(Array.isArray(agents) && agents.length > 0 && agents.length <= MAX_NAMED_AGENTS && agents.every(a => typeof a === 'string' && a !== ''))) {
      throw new ValidationError(`agents must be absent (this agent), "all" or a list of 1 to ${MAX_NAMED_AGENTS} peer ids.`)
    }
    const image = [...c.images()].find(i => i.id === imageId && i.status !== 'deleted')
    if (image == null) throw new ImageNotFoundError(`No image found with ID ${imageId}`)
    if (image.status !== 'active') throw new ValidationError('Only images with status active can be targeted for queueing')
    if (agents === undefined) {
      c.cache.fetchNow(imageId)
      return await reply.code(202).send({ image_id: imageId })
    }
    if (c.orderPrefetch == null) throw new ValidationError('This agent runs without a mesh: there are no other agents to order.')
    await c.orderPrefetch(imageId, agents as 'all' | string[])
    return await reply.code(202).send({ image_id: imageId, agents })
  })

  app.get('/metrics', async (_request, reply) => {
    return await reply.type(c.registry.contentType).send(await c.registry.metrics())
  })
}

/** Bounds what one request may name (and so how many peers one request dials). */
const MAX_NAMED_AGENTS = 1000

async function cacheView (cache: OpsComponents['cache']): Promise<Record<string, number>> {
  const { used, max, free } = await cache.usage()
  return { usedBytes: used, maxBytes: max, freeBytes: free, evictions: cache.stats.evictions, evictedBytes: cache.stats.evictedBytes }
}

function registerCacheMetrics (registry: Registry, cache: OpsComponents['cache']): void {
  const registers = [registry]
  new Gauge({
    name: 'peerglance_cache_bytes',
    help: 'Bytes of image chunks this agent holds',
    registers,
    async collect () { this.set((await cache.usage()).used) }
  })
  new Gauge({
    name: 'peerglance_cache_max_bytes',
    help: 'Bytes of image chunks this agent may hold (cache.maxBytes, or its share of the disk)',
    registers,
    async collect () { this.set((await cache.usage()).max) }
  })
  new Counter({
    name: 'peerglance_cache_evictions_total',
    help: 'Images evicted from this agent\'s cache',
    registers,
    // The cache keeps the running total (it knows no prom-client); the counter reports it.
    collect () { this.reset(); this.inc(cache.stats.evictions) }
  })
}
