import { ChunkUnavailableError, sha256DigestOf, ShuttingDownError } from '@peerglance/interface'
import type { AbortOptions, ChunkBlocks, ChunkStore, ImageReader, Manifest, Startable } from '@peerglance/interface'
import { defaultLogger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import type { ComponentLogger, Logger, PeerId } from '@libp2p/interface'
import type { Registry } from 'prom-client'
import { ChunkExchange, imageKey } from './chunk-exchange.ts'
import type { ChunkExchangeInit } from './chunk-exchange.ts'
import { equalBytes, sha256 } from './bytes.ts'
import { getBit, HAVE_NONE } from './framing.ts'
import type { HaveState } from './framing.ts'
import { pinoComponentLogger } from './logger.ts'
import type { PinoLike } from './logger.ts'
import { MeshMetrics } from './metrics.ts'
import { bulkAuth } from './bulk-channel.ts'
import type { ChunkNetwork } from './exchange-client.ts'
import { createMeshNode, meshIdentity } from './node.ts'
import type { MeshLibp2p, MeshNodeInit } from './node.ts'
import { DEFAULT_LISTEN } from './constants.ts'
import { Swarm } from './swarm.ts'
import { shuffle } from './shuffle.ts'
import type { SwarmInit } from './swarm.ts'

/** Peers asked at once whether they hold a whole image. */
const COPY_CHECKS_AT_ONCE = 8

export interface MeshComponents {
  /** The local chunk store: serves peers and keeps what they send (FsChunkStore). */
  chunks: ChunkBlocks
  /**
   * Optional, and best the same FsChunkStore as `chunks`: reads images held entirely here as whole
   * ranges (pooled buffers, read-ahead) instead of chunk by chunk through `chunks.readChunk`.
   */
  local?: Pick<ChunkStore, 'read'>
  /** The manifest bytes this agent has for an image (answers peers' MANIFEST requests). */
  getManifestBytes: (imageId: string) => Promise<Uint8Array | undefined>
  /** A pino logger; the mesh logs under `component: 'mesh'`. */
  logger?: PinoLike
  /** Where the mesh's Prometheus metrics go (the agent's /metrics registry). */
  registry?: Registry
  /** An image whose manifest names the chunk, to count the bytes sent to peers per image. */
  imageOfChunk?: (cid: string) => Promise<string | undefined>
}

export interface MeshInit extends MeshNodeInit, SwarmInit, ChunkExchangeInit {
  /** How long `fetchManifest` keeps asking peers by default. */
  manifestTimeoutMs?: number
  /**
   * TCP port of the bulk channel (bulk-channel.ts) on the host of the first TCP listen address:
   * 0 (default) any free port, negative none (chunks then go on libp2p only).
   */
  bulkPort?: number
}

export interface FetchManifestOptions extends AbortOptions {
  timeoutMs?: number
}

type Status = 'stopped' | 'starting' | 'started' | 'stopping'

/** Peers asked at once for a manifest; the first good answer wins and the others are cancelled. */
const MANIFEST_RACE = 3
const DEFAULT_MANIFEST_TIMEOUT_MS = 5_000

/**
 * The mesh's parts, built in dependency order and not started: the libp2p node (its peer key
 * is read, or made, now), the chunk exchange on it, and the read-through swarm over the exchange.
 */
export async function createMesh (components: MeshComponents, init: MeshInit = {}): Promise<Mesh> {
  const logger = components.logger != null ? pinoComponentLogger(components.logger) : defaultLogger()
  const { getManifestBytes, imageOfChunk } = components
  const identity = await meshIdentity(init)
  const libp2p = await createMeshNode({ ...init, holds: async id => await getManifestBytes(id) != null }, identity)
  const metrics = new MeshMetrics({
    registry: components.registry,
    connectedPeers: () => libp2p.getPeers().length,
    bulkChannels: () => ({ accepted: exchange.stats.bulkChannels, refused: exchange.stats.bulkRefused }),
    requestsServed: () => {
      const s = exchange.stats
      return {
        get: s.getsServed, 'get-bulk': s.bulkGetsServed, 'get-not-found': s.chunksNotFound, 'get-refused-once': s.refusedOnce, have: s.havesServed, 'have-from-files': s.havesFromFiles, manifest: s.manifestsServed,
        announce: s.announcesHeard, 'announce-bulk': s.bulkAnnouncesHeard
      }
    },
    fetches: (): Record<string, number> => ({ ...swarm.fetchReasons, ...swarm.fetchFailures })
  })
  const network: ChunkNetwork = {
    handle: async (protocol, handler, options) => { await libp2p.handle(protocol, handler, options) },
    unhandle: async protocol => { await libp2p.unhandle(protocol) },
    dialProtocol: async (peer, protocols, options) => await libp2p.dialProtocol(peer, protocols, options),
    remoteHost: peer => ipOf(libp2p.getConnections(peer)[0]?.remoteAddr.getComponents() ?? [])
  }
  const auth = (init.bulkPort ?? 0) >= 0 ? bulkAuth(identity.privateKey, identity.own, identity.membership) : undefined
  const firstListen = (init.listen ?? DEFAULT_LISTEN)[0]
  const bulkHost = firstListen == null ? undefined : ipOf(multiaddr(firstListen).getComponents())
  const exchange = new ChunkExchange({
    network,
    ...(auth != null && bulkHost != null ? { bulk: { auth, host: bulkHost, port: init.bulkPort ?? 0 } } : {}),
    blocks: components.chunks,
    getManifestBytes,
    traffic: {
      sent: (_peer, bytes) => { metrics.sent(bytes) },
      received: (_peer, bytes) => { metrics.received(bytes) },
      // Looked up after the chunk is on its way, off the serving path.
      served: (cid, bytes) => { void imageOfChunk?.(cid).then(id => { if (id != null) metrics.imageSent(id, bytes) }, () => {}) }
    },
    logger
  }, init)
  const swarm = new Swarm({
    blocks: components.chunks,
    local: components.local,
    exchange,
    peerId: libp2p.peerId,
    events: libp2p,
    connectedPeers: () => libp2p.getPeers(),
    metrics,
    logger
  }, init)
  // The swarm answers peers' HAVE requests and hears their ANNOUNCEs: who holds what.
  exchange.answerHavesWith(swarm)
  return new Mesh({ libp2p, exchange, swarm, metrics, logger, pino: components.logger }, init)
}

/** The IP address in a multiaddr's components, if it has one. */
function ipOf (components: Array<{ name: string, value?: string }>): string | undefined {
  return components.find(c => c.name === 'ip4' || c.name === 'ip6')?.value
}

export interface MeshParts {
  libp2p: MeshLibp2p
  exchange: ChunkExchange
  swarm: Swarm
  metrics: MeshMetrics
  logger: ComponentLogger
  /** For the info log: peers connecting and leaving, the mesh started. */
  pino?: PinoLike
}

/**
 * The agent's peer-to-peer side in one object: the libp2p node, the chunk exchange and the
 * read-through swarm (made by `createMesh`). `start()` listens, dials the bootstrap peers and
 * begins answering peers.
 */
export class Mesh implements Startable {
  readonly [Symbol.toStringTag] = '@peerglance/mesh'
  readonly metrics: MeshMetrics
  /** The libp2p node; other services (metadata sync) register protocols and topics on it. */
  readonly libp2p: MeshLibp2p
  readonly exchange: ChunkExchange
  /** Streams images through the swarm; fails with ShuttingDownError while the mesh is not running. */
  readonly reader: ImageReader
  readonly #swarm: Swarm
  readonly #init: MeshInit
  readonly #pino: PinoLike | undefined
  readonly #log: Logger
  #status: Status = 'stopped'
  #lifecycle: Promise<void> = Promise.resolve()

  constructor (parts: MeshParts, init: MeshInit = {}) {
    this.libp2p = parts.libp2p
    this.exchange = parts.exchange
    this.#swarm = parts.swarm
    this.metrics = parts.metrics
    this.#init = init
    this.#pino = parts.pino
    this.#log = parts.logger.forComponent('peerglance:mesh')
    this.reader = {
      read: (imageId, manifest, start, end, opts) => this.swarm.read(imageId, manifest, start, end, opts)
    }
    // Operators want to see the mesh form and break up in the info log; libp2p's own log is far chattier.
    this.libp2p.addEventListener('peer:connect', event => { this.#pino?.info({ component: 'mesh', peer: event.detail.toString() }, 'peer connected') })
    this.libp2p.addEventListener('peer:disconnect', event => { this.#pino?.info({ component: 'mesh', peer: event.detail.toString() }, 'peer disconnected') })
  }

  get status (): Status { return this.#status }

  get swarm (): Swarm {
    if (this.#status !== 'started') throw new ShuttingDownError('The peer-to-peer mesh is not running.')
    return this.#swarm
  }

  get peerId (): string {
    return this.libp2p.peerId.toString()
  }

  /** Full multiaddrs, each ending in `/p2p/<peer id>`. */
  get multiaddrs (): string[] {
    return this.libp2p.getMultiaddrs().map(a => a.toString())
  }

  connectedPeers (): string[] {
    return this.libp2p.getPeers().map(p => p.toString())
  }

  async start (): Promise<void> {
    await this.#serially(async () => {
      if (this.#status === 'started') return
      this.#status = 'starting'
      try {
        await this.libp2p.start()
        await this.exchange.start()
        await this.#swarm.start()
        this.#status = 'started'
      } catch (err) {
        await this.#teardown()
        this.#status = 'stopped'
        throw err
      }
    })
    this.#log('mesh started as %s on %s', this.peerId, this.multiaddrs.join(' '))
    this.#pino?.info({ component: 'mesh', peer: this.peerId, multiaddrs: this.multiaddrs }, 'mesh started')
  }

  async stop (): Promise<void> {
    await this.#serially(async () => {
      if (this.#status !== 'started') return
      this.#status = 'stopping'
      await this.#teardown()
      this.#status = 'stopped'
    })
  }

  async #teardown (): Promise<void> {
    await this.#swarm.stop().catch(err => { this.#log.error('swarm stop failed - %e', err) })
    await this.exchange.stop().catch(err => { this.#log.error('exchange stop failed - %e', err) })
    try {
      await this.libp2p.stop()
    } catch (err) {
      this.#log.error('libp2p stop failed - %e', err)
    }
  }

  /** The sites agents of the mesh announce, with how many agents each (this one's included). */
  sites (): Map<string, number> {
    return this.libp2p.services.peerExchange.sites()
  }

  /** Stops any download of the image (it was deleted here). */
  async forgetImage (imageId: string): Promise<void> {
    if (this.#status !== 'started') return
    await this.#swarm.abandon(imageId)
  }

  /**
   * How many connected peers hold a complete copy of the image, asked a few at a time until
   * `enough` said yes. A peer counts only if it claims every chunk (HAVE) and then sends one chunk
   * picked at random that hashes right, so a peer that lies about what it holds is caught most of
   * the time. A lower bound on the mesh's copies: peers this agent is not connected to are not asked.
   */
  async completeCopies (manifest: Manifest, opts: { enough: number, timeoutMs?: number }): Promise<number> {
    const exchange = this.exchange
    const n = manifest.cids.length
    if (n === 0) return 0
    const key = imageKey(manifest.cids)
    const signal = AbortSignal.timeout(opts.timeoutMs ?? 5000)
    // We ask because we may drop our copy: tell them we hold nothing, so nobody counts on it.
    const mine = { state: HAVE_NONE as HaveState, bits: new Uint8Array(Math.ceil(n / 8)) }
    const holds = async (peer: PeerId): Promise<boolean> => {
      try {
        const { bits } = await exchange.have(peer, key, manifest.cids, mine, { signal })
        for (let i = 0; i < n; i++) if (!getBit(bits, i)) return false
        await exchange.get(peer, manifest.cids[Math.floor(Math.random() * n)], { signal })
        return true
      } catch {
        return false
      }
    }
    const peers = this.libp2p.getPeers()
    let count = 0
    for (let i = 0; i < peers.length && count < opts.enough; i += COPY_CHECKS_AT_ONCE) {
      count += (await Promise.all(peers.slice(i, i + COPY_CHECKS_AT_ONCE).map(holds))).filter(Boolean).length
    }
    return count
  }

  /** Images being fetched from peers now, with the chunks held so far. */
  transfers (): Array<{ imageId: string, held: number, chunks: number }> {
    if (this.#status !== 'started') return []
    return this.swarm.sessions().filter(s => !s.complete).map(({ imageId, held, chunks }) => ({ imageId, held, chunks }))
  }

  /** The share (0..1) of an image's chunks this agent holds. */
  async localShare (manifest: Manifest): Promise<number> {
    return await this.swarm.localShare(manifest)
  }

  /**
   * An image's manifest bytes from some peer, checked against `manifestCid` (the sha2-256 digest
   * the image's metadata names): several peers are asked at once, the first answer that hashes
   * right wins, the rest are cancelled. Keeps asking connected peers until `timeoutMs`, then
   * fails with ChunkUnavailableError.
   */
  async fetchManifest (imageId: string, manifestCid: string, opts: FetchManifestOptions = {}): Promise<Uint8Array> {
    const expected = sha256DigestOf(manifestCid)
    const exchange = this.exchange
    const deadline = Date.now() + (opts.timeoutMs ?? this.#init.manifestTimeoutMs ?? DEFAULT_MANIFEST_TIMEOUT_MS)
    const causes: unknown[] = []
    const refused = new Set<string>()
    while (true) {
      const peers = shuffle(this.libp2p.getPeers().filter(p => !refused.has(p.toString())))
      for (let at = 0; at < peers.length; at += MANIFEST_RACE) {
        const batch = peers.slice(at, at + MANIFEST_RACE)
        const ac = new AbortController()
        const signal = opts.signal == null ? ac.signal : AbortSignal.any([ac.signal, opts.signal])
        try {
          return await Promise.any(batch.map(async (peer: PeerId) => {
            try {
              const bytes = await exchange.manifest(peer, imageId, { signal, timeoutMs: Math.max(1, deadline - Date.now()) })
              if (!equalBytes(sha256(bytes), expected)) {
                this.#log.error('peer %p sent a manifest for %s that does not match %s', peer, imageId, manifestCid)
                throw new Error('manifest does not match its CID')
              }
              return bytes
            } catch (err) {
              refused.add(peer.toString())
              throw err
            }
          }))
        } catch (err) {
          causes.push(...((err as AggregateError).errors ?? [err]))
        } finally {
          ac.abort()
        }
        opts.signal?.throwIfAborted()
      }
      if (Date.now() >= deadline) break
      // No peer of ours has it (peer sets are bounded): ask the mesh, holders dial us.
      this.libp2p.services.peerExchange.want(imageId)
      await new Promise(resolve => setTimeout(resolve, Math.min(250, Math.max(0, deadline - Date.now()))))
      // Peers that said no may have the manifest by now (their metadata arrived late).
      refused.clear()
      opts.signal?.throwIfAborted()
    }
    throw new ChunkUnavailableError(`No peer could send the manifest of image ${imageId}.`, { cause: new AggregateError(causes) })
  }

  async #serially (task: () => Promise<void>): Promise<void> {
    const run = this.#lifecycle.then(task)
    this.#lifecycle = run.catch(() => {})
    await run
  }
}
