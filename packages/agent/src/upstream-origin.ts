import type { AgentConfig } from '@peerglance/config'
import type { ImageRecord, Logger, MetadataStore } from '@peerglance/interface'
import type { MeshLibp2p } from '@peerglance/mesh'
import { GlanceClient, KeystoneSession, UpstreamMirror } from '@peerglance/upstream'
import type { MirrorPeers } from '@peerglance/upstream'
import { Gauge } from 'prom-client'
import type { Registry } from 'prom-client'

/** Gossip topic of the pollers' heartbeats (when each last read the upstream's list whole). */
export const UPSTREAM_TOPIC = 'peerglance/upstream/1'

export interface UpstreamParts {
  client: GlanceClient
  mirror: UpstreamMirror
  start: () => Promise<void>
  stop: () => Promise<void>
}

/**
 * The cloud's existing Glance as the mesh's origin (config `upstream`), wired to this agent's
 * metadata store, mesh and metrics; undefined when no upstream is configured.
 */
export function upstreamOrigin (config: AgentConfig, components: {
  metadata: MetadataStore
  libp2p: MeshLibp2p
  deleteImage: (image: ImageRecord) => Promise<void>
  logger: Logger
  registry: Registry
}): UpstreamParts | undefined {
  const u = config.upstream
  if (u.url == null && u.region == null) return undefined
  const keystoneUrl = u.keystone.url ?? config.auth.keystone.url
  if (keystoneUrl == null) return undefined
  const session = new KeystoneSession({ ...u.keystone, url: keystoneUrl }, { timeoutMs: u.timeoutMs })
  const fixed = u.url?.replace(/\/+$/, '')
  const client = new GlanceClient(session, {
    endpoint: async () => fixed ?? await session.imageEndpoint(u.region as string),
    timeoutMs: u.timeoutMs
  })
  const libp2p = components.libp2p
  const peers: MirrorPeers = {
    self: libp2p.peerId.toString(),
    known: async () => (await libp2p.peerStore.all()).map(p => p.id.toString()),
    publish: async message => { await libp2p.services.pubsub.publish(UPSTREAM_TOPIC, message) },
    onMessage: handler => {
      const pubsub = libp2p.services.pubsub
      const listener = (evt: CustomEvent<{ topic: string, data: Uint8Array }>): void => { if (evt.detail.topic === UPSTREAM_TOPIC) handler(evt.detail.data) }
      pubsub.subscribe(UPSTREAM_TOPIC)
      pubsub.addEventListener('message', listener as never)
      return () => { pubsub.removeEventListener('message', listener as never); pubsub.unsubscribe(UPSTREAM_TOPIC) }
    }
  }
  const m = components.metadata
  const mirror = new UpstreamMirror({
    client,
    peers,
    logger: components.logger,
    store: {
      images: () => m.images(),
      getImage: id => m.getImage(id),
      putImage: async image => { await m.putImage(image) },
      members: id => m.members(id),
      putMember: async member => { await m.putMember(member) },
      deleteMember: async (imageId, memberId) => { await m.deleteMember(imageId, memberId) },
      deleteImage: components.deleteImage
    }
  }, { upstream: fixed ?? `region:${u.region as string}`, intervalMs: u.pollIntervalMs, pollers: u.pollers })
  const refreshed = new Gauge({
    name: 'peerglance_upstream_last_refresh_seconds',
    help: 'When the upstream Glance\'s image list was last read whole (here or by a poller), Unix time; 0 before the first',
    registers: [components.registry],
    collect () { this.set((mirror.lastRefresh ?? 0) / 1000) }
  })
  void refreshed
  return {
    client,
    mirror,
    start: async () => { mirror.start() },
    stop: async () => { await mirror.stop() }
  }
}
