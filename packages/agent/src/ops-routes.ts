import type { FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import { ImageNotFoundError } from '@peerglance/interface'
import type { ImageRecord, Manifest } from '@peerglance/interface'

/** What the status document says about the mesh; absent when the agent runs alone. */
export interface MeshView {
  readonly peerId: string
  readonly multiaddrs: string[]
  connectedPeers: () => string[]
  localShare: (manifest: Manifest) => Promise<number>
}

export interface OpsComponents {
  registry: Registry
  pins: { pin: (imageId: string, pinned: boolean) => void, isPinned: (imageId: string) => boolean }
  images: () => Iterable<ImageRecord>
  manifest: (imageId: string) => Promise<Manifest | undefined>
  mesh?: MeshView
  /** The root of the replicated state's digest (metadata-sync), once the mesh runs. */
  stateRoot?: () => string | undefined
}

/**
 * The agent's own API beside Glance's: `/peerglance/v1/status` for operators and Prometheus
 * `/metrics`. Unauthenticated, like Glance's `/healthcheck`: keep the API on loopback or firewall it.
 */
export function opsRoutes (app: FastifyInstance, c: OpsComponents): void {
  app.get('/peerglance/v1/status', async () => {
    const images = []
    for (const image of c.images()) {
      if (image.status === 'deleted') continue
      const manifest = await c.manifest(image.id)
      const chunks = manifest?.cids.length ?? null
      // Without the manifest here this agent has never read the image, so it holds none of it.
      let localShare: number | null = image.size == null ? null : 0
      if (manifest != null) localShare = c.mesh == null ? 1 : await c.mesh.localShare(manifest)
      images.push({ id: image.id, name: image.name, status: image.status, size: image.size, chunks, localShare, pinned: c.pins.isPinned(image.id) })
    }
    return {
      peerId: c.mesh?.peerId ?? null,
      multiaddrs: c.mesh?.multiaddrs ?? [],
      peers: c.mesh?.connectedPeers() ?? [],
      stateRoot: c.stateRoot?.() ?? null,
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
        c.pins.pin(imageId, pinned)
        return await reply.code(204).send()
      }
    })
  }

  app.get('/metrics', async (_request, reply) => {
    return await reply.type(c.registry.contentType).send(await c.registry.metrics())
  })
}
