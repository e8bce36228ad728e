import type { AgentConfig } from '@peerglance/config'
import type { AbortOptions, ChunkStore, ImageReader, ImageRecord, Logger, Manifest } from '@peerglance/interface'
import type { LevelMetadataStore } from '@peerglance/metadata-store'
import type { MeshLibp2p } from '@peerglance/mesh'
import { GlanceClient, KeystoneSession, OriginFetch, ReadThrough, UpstreamMirror } from '@peerglance/upstream'
import type { MirrorPeers, OriginPeers } from '@peerglance/upstream'
import { lpStream } from '@libp2p/utils'
import type { PeerId, Stream } from '@libp2p/interface'
import { Counter, Gauge } from 'prom-client'
import type { Registry } from 'prom-client'

/** Gossip topic of the pollers' heartbeats (when each last read the upstream's list whole). */
export const UPSTREAM_TOPIC = 'peerglance/upstream/1'
/**
 * `/peerglance/origin-fetch/1.0.0`: one length-prefixed image id asks the peer to fetch that
 * upstream image into the mesh; one byte answers (1: it does, or has it; 0: it will not).
 */
export const ORIGIN_FETCH_PROTOCOL = '/peerglance/origin-fetch/1.0.0'
const ASK_TIMEOUT_MS = 3000

/** Where a download finds an image's manifest (glance-domain's ManifestSource). */
interface ManifestSource { fetch: (imageId: string, opts?: AbortOptions) => Promise<Manifest | undefined> }

export interface UpstreamParts {
  client: GlanceClient
  mirror: UpstreamMirror
  /** Downloads: upstream images with no data in the mesh are read through (`manifests`, `reader`). */
  manifests: (inner: ManifestSource) => ManifestSource
  reader: (inner: ImageReader) => ImageReader
  start: () => Promise<void>
  stop: () => Promise<void>
}

/**
 * The cloud's existing Glance as the mesh's origin (config `upstream`), wired to this agent's
 * metadata store, mesh and metrics; undefined when no upstream is configured.
 */
export function upstreamOrigin (config: AgentConfig, components: {
  metadata: LevelMetadataStore
  chunks: ChunkStore
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
  const peerIds = new Map<string, PeerId>()
  const known = async (): Promise<string[]> => {
    for (const peer of await libp2p.peerStore.all()) peerIds.set(peer.id.toString(), peer.id)
    return [...peerIds.keys()]
  }
  const peers: MirrorPeers = {
    self: libp2p.peerId.toString(),
    known,
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
  const received = new Counter({ name: 'peerglance_upstream_bytes_received_total', help: 'Image bytes read from the upstream Glance', registers: [components.registry] })
  const origin = new OriginFetch({ client, chunks: components.chunks, metadata: m, logger: components.logger, received: n => { received.inc(n) } })
  const originPeers: OriginPeers = {
    self: libp2p.peerId.toString(),
    known,
    ask: async (peer, imageId, opts) => {
      const id = peerIds.get(peer)
      if (id == null) return false
      const signal = AbortSignal.any([AbortSignal.timeout(ASK_TIMEOUT_MS), ...opts.signal == null ? [] : [opts.signal]])
      const stream = await libp2p.dialProtocol(id, ORIGIN_FETCH_PROTOCOL, { signal })
      const lp = lpStream(stream, { maxDataLength: 256 })
      await lp.write(new TextEncoder().encode(imageId), { signal })
      const answer = (await lp.read({ signal })).subarray()
      await stream.close({ signal }).catch(() => {})
      return answer[0] === 1
    }
  }
  const readThrough = new ReadThrough({ origin, metadata: m, peers: originPeers, logger: components.logger })
  const serve = async (stream: Stream): Promise<void> => {
    const signal = AbortSignal.timeout(ASK_TIMEOUT_MS)
    try {
      const lp = lpStream(stream, { maxDataLength: 256 })
      const imageId = new TextDecoder().decode((await lp.read({ signal })).subarray())
      await lp.write(Uint8Array.of(await readThrough.asked(imageId) ? 1 : 0), { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
    }
  }
  return {
    client,
    mirror,
    manifests: inner => ({
      fetch: async (imageId, opts) => await inner.fetch(imageId, opts) ?? await readThrough.manifest(imageId, async () => await inner.fetch(imageId, opts), opts)
    }),
    reader: inner => readThrough.reader(inner),
    start: async () => {
      await libp2p.handle(ORIGIN_FETCH_PROTOCOL, serve, { maxInboundStreams: 8 })
      mirror.start()
    },
    stop: async () => {
      await mirror.stop()
      origin.stop()
      await libp2p.unhandle(ORIGIN_FETCH_PROTOCOL)
    }
  }
}
