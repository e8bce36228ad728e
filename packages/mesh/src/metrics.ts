import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { ImageTransfers } from '@peerglance/interface'

/**
 * Images with per-image series at most. An agent may hold thousands of images; Prometheus is
 * told about the most recently active ones (a quiet image's series go first, and come back,
 * from zero, when it moves bytes again).
 */
export const DEFAULT_MAX_IMAGE_SERIES = 256

export interface MeshMetricsInit {
  /** Where the metrics are registered; a private registry when absent. */
  registry?: Registry
  /** Reads the number of connected peers when the gauge is scraped. */
  connectedPeers?: () => number
  /** Reads how many bulk channels (TLS) peers have opened to this agent, and how many were refused. */
  bulkChannels?: () => { accepted: number, refused: number }
  /** Reads the requests peers made of this agent, by kind (the exchange's stats). */
  requestsServed?: () => Record<string, number>
  /** Reads the chunk fetches this agent started, by scheduling step and source, and how they failed (the swarm's `fetches`). */
  fetches?: () => Record<string, number>
  /** Images with per-image series at most (DEFAULT_MAX_IMAGE_SERIES). */
  maxImageSeries?: number
}

/**
 * The mesh's Prometheus metrics (names per STYLE.md: `peerglance_<subsystem>_<what>_<unit>`), and
 * plain totals of the same figures for tests and logs, which read no registry.
 */
export class MeshMetrics implements ImageTransfers {
  readonly registry: Registry
  readonly bytesSent: Counter
  readonly bytesReceived: Counter
  readonly clientBytesServed: Counter
  /** Per image: bytes sent to API clients, fetched from peers, sent to peers. */
  readonly imageClientBytesServed: Counter<'image'>
  readonly imagePeerBytesReceived: Counter<'image'>
  readonly imagePeerBytesSent: Counter<'image'>
  readonly cacheHits: Counter
  readonly cacheMisses: Counter
  readonly chunkFetchSeconds: Histogram
  readonly connectedPeers: Gauge
  readonly bulkChannels: Gauge<'outcome'>
  readonly requestsServed: Gauge<'kind'>
  readonly fetches: Gauge<'kind'>
  readonly totals = { bytesSent: 0, bytesReceived: 0, clientBytesServed: 0, cacheHits: 0, cacheMisses: 0, chunksFetched: 0, badChunks: 0 }
  /** Images that have series now, least recently active first. */
  readonly #imageSeries = new Set<string>()
  readonly #maxImageSeries: number

  constructor (init: MeshMetricsInit = {}) {
    this.registry = init.registry ?? new Registry()
    const registers = [this.registry]
    const read = init.connectedPeers ?? (() => 0)
    this.bytesSent = new Counter({ name: 'peerglance_peer_bytes_sent_total', help: 'Bytes of chunk-exchange frames sent to peers', registers })
    this.bytesReceived = new Counter({ name: 'peerglance_peer_bytes_received_total', help: 'Bytes of chunk-exchange frames received from peers', registers })
    this.clientBytesServed = new Counter({ name: 'peerglance_client_bytes_served_total', help: 'Image bytes sent to API clients', registers })
    const labelNames = ['image'] as const
    this.imageClientBytesServed = new Counter({ name: 'peerglance_image_client_bytes_served_total', help: 'Bytes of the image sent to API clients (images held here and recently active only)', labelNames, registers })
    this.imagePeerBytesReceived = new Counter({ name: 'peerglance_image_peer_bytes_received_total', help: 'Bytes of the image\'s chunks fetched from peers (images held here and recently active only)', labelNames, registers })
    this.imagePeerBytesSent = new Counter({ name: 'peerglance_image_peer_bytes_sent_total', help: 'Bytes of the image\'s chunks sent to peers (images held here and recently active only)', labelNames, registers })
    this.#maxImageSeries = init.maxImageSeries ?? DEFAULT_MAX_IMAGE_SERIES
    this.cacheHits = new Counter({ name: 'peerglance_cache_hits_total', help: 'Image chunks served to reads from the local store that no read had to fetch', registers })
    this.cacheMisses = new Counter({ name: 'peerglance_cache_misses_total', help: 'Image chunks fetched from peers for reads (ahead of the reader included)', registers })
    this.chunkFetchSeconds = new Histogram({
      name: 'peerglance_chunk_fetch_seconds',
      help: 'Time from asking a peer for a chunk to holding its verified bytes',
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers
    })
    this.connectedPeers = new Gauge({
      name: 'peerglance_connected_peers',
      help: 'Peers with an open libp2p connection',
      registers,
      collect () { this.set(read()) }
    })
    const bulk = init.bulkChannels ?? (() => ({ accepted: 0, refused: 0 }))
    this.bulkChannels = new Gauge({
      name: 'peerglance_peer_bulk_channels',
      help: 'Bulk channels (chunks over TLS) peers opened to this agent since it started, by outcome: accepted, or refused before any frame (no certificate, not a member)',
      labelNames: ['outcome'] as const,
      registers,
      collect () {
        const now = bulk()
        this.set({ outcome: 'accepted' }, now.accepted)
        this.set({ outcome: 'refused' }, now.refused)
      }
    })
    /** A gauge of counts a component keeps by kind, read at each scrape. */
    const byKind = (name: string, help: string, read: (() => Record<string, number>) | undefined): Gauge<'kind'> => new Gauge({
      name,
      help,
      labelNames: ['kind'] as const,
      registers,
      collect () {
        for (const [kind, count] of Object.entries(read?.() ?? {})) this.set({ kind }, count)
      }
    })
    this.fetches = byKind('peerglance_chunk_fetches', 'Chunk fetches this agent started since it started, by scheduling step and source (e.g. mine/from-seed, announced/from-downloader), and those that failed, by error (e.g. mine/from-seed/SentElsewhereError)', init.fetches)
    this.requestsServed = byKind('peerglance_peer_requests_served', 'Chunk-protocol requests peers made of this agent since it started, by kind (get, get-bulk: of those on the bulk channel, get-not-found, get-refused-once, have, have-from-files, manifest, announce: one-way ANNOUNCEs heard, announce-bulk: of those on the bulk channel)', init.requestsServed)
  }

  sent (bytes: number): void {
    this.totals.bytesSent += bytes
    this.bytesSent.inc(bytes)
  }

  received (bytes: number): void {
    this.totals.bytesReceived += bytes
    this.bytesReceived.inc(bytes)
  }

  served (imageId: string, bytes: number): void {
    this.totals.clientBytesServed += bytes
    this.clientBytesServed.inc(bytes)
    this.imageClientBytesServed.inc({ image: this.#active(imageId) }, bytes)
  }

  imageReceived (imageId: string, bytes: number): void {
    this.imagePeerBytesReceived.inc({ image: this.#active(imageId) }, bytes)
  }

  imageSent (imageId: string, bytes: number): void {
    this.imagePeerBytesSent.inc({ image: this.#active(imageId) }, bytes)
  }

  forget (imageId: string): void {
    if (!this.#imageSeries.delete(imageId)) return
    for (const counter of [this.imageClientBytesServed, this.imagePeerBytesReceived, this.imagePeerBytesSent]) counter.remove({ image: imageId })
  }

  /** Marks the image most recently active; drops the series of the least recently active beyond the cap. */
  #active (imageId: string): string {
    this.#imageSeries.delete(imageId)
    this.#imageSeries.add(imageId)
    if (this.#imageSeries.size > this.#maxImageSeries) this.forget(this.#imageSeries.values().next().value!)
    return imageId
  }

  hit (): void {
    this.totals.cacheHits++
    this.cacheHits.inc()
  }

  miss (): void {
    this.totals.cacheMisses++
    this.cacheMisses.inc()
  }

  fetched (seconds: number): void {
    this.totals.chunksFetched++
    this.chunkFetchSeconds.observe(seconds)
  }
}
