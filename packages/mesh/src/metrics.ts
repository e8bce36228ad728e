import { Counter, Gauge, Histogram, Registry } from 'prom-client'

export interface MeshMetricsInit {
  /** Where the metrics are registered; a private registry when absent. */
  registry?: Registry
  /** Reads the number of connected peers when the gauge is scraped. */
  connectedPeers?: () => number
}

/**
 * The mesh's Prometheus metrics (names per STYLE.md: `peerglance_<subsystem>_<what>_<unit>`), and
 * plain totals of the same figures for tests and logs, which read no registry.
 */
export class MeshMetrics {
  readonly registry: Registry
  readonly bytesSent: Counter
  readonly bytesReceived: Counter
  readonly cacheHits: Counter
  readonly cacheMisses: Counter
  readonly chunkFetchSeconds: Histogram
  readonly connectedPeers: Gauge
  readonly totals = { bytesSent: 0, bytesReceived: 0, cacheHits: 0, cacheMisses: 0, chunksFetched: 0, badChunks: 0 }

  constructor (init: MeshMetricsInit = {}) {
    this.registry = init.registry ?? new Registry()
    const registers = [this.registry]
    const read = init.connectedPeers ?? (() => 0)
    this.bytesSent = new Counter({ name: 'peerglance_peer_bytes_sent_total', help: 'Bytes of chunk-exchange frames sent to peers', registers })
    this.bytesReceived = new Counter({ name: 'peerglance_peer_bytes_received_total', help: 'Bytes of chunk-exchange frames received from peers', registers })
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
  }

  sent (bytes: number): void {
    this.totals.bytesSent += bytes
    this.bytesSent.inc(bytes)
  }

  received (bytes: number): void {
    this.totals.bytesReceived += bytes
    this.bytesReceived.inc(bytes)
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
