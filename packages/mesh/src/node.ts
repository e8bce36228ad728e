import { noise } from '@chainsafe/libp2p-noise'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import type { ComponentLogger, Libp2p, PeerDiscovery, PrivateKey } from '@libp2p/interface'
import { DEFAULT_LISTEN } from './constants.ts'
import { fastNoiseCrypto } from './noise-crypto.ts'
import { loadOrCreatePeerKey } from './peer-key.ts'
import { peerExchange } from './peer-exchange.ts'
import type { PeerExchange, PeerExchangeComponents } from './peer-exchange.ts'
import { redial } from './redial.ts'
import type { Redial, RedialComponents } from './redial.ts'

export interface MeshNodeInit {
  /** Holds `peer.key`; required unless `privateKey` is given. */
  dataDir?: string
  /** Use this key instead of the one in `dataDir`. */
  privateKey?: PrivateKey
  /** Multiaddrs to listen on (default `/ip4/127.0.0.1/tcp/0`). */
  listen?: string[]
  /** Multiaddrs to advertise instead of the listen addresses (NAT, containers). */
  announce?: string[]
  /** Peers (multiaddrs with `/p2p/<id>`) dialled at start and redialled while disconnected. */
  bootstrap?: string[]
  /** Find peers on the local network by mDNS (off by default). */
  mdns?: boolean
  /** First and largest wait between redials of a bootstrap peer. */
  redialMinMs?: number
  redialMaxMs?: number
  /** How often each agent repeats its addresses to the others (peer-exchange.ts). */
  peerAnnounceIntervalMs?: number
  /** Connections libp2p keeps at most. */
  maxConnections?: number
  /**
   * Inbound connections accepted per second from one host. libp2p's default of 5 refuses a swarm
   * of agents on one test machine; across hosts each agent dials a peer once.
   */
  inboundConnectionThreshold?: number
  /**
   * 'fast' (default): Noise with one KeyObject per session key instead of one per frame
   * (noise-crypto.ts); 'stock': @chainsafe/libp2p-noise's own node:crypto path. Same wire format.
   */
  noiseCrypto?: 'fast' | 'stock'
  /** libp2p's ComponentLogger; by default libp2p's own (the `DEBUG=libp2p*,peerglance*` variable). */
  logger?: ComponentLogger
}

export type MeshServices = {
  identify: Identify
  ping: Ping
  pubsub: GossipSub
  redial: Redial
  peerExchange: PeerExchange
  // libp2p's ServiceMap wants an index signature; the lead's metadata sync adds no service here.
  [name: string]: unknown
}

export type MeshLibp2p = Libp2p<MeshServices>

/**
 * A libp2p node as every agent runs it, not started: TCP, Noise, yamux (p2p-perf REPORT.md
 * recommendations 2 and 3), identify, ping and gossipsub with signed messages only. The peer id
 * comes from `<dataDir>/peer.key`, made on first use.
 */
export async function createMeshNode (init: MeshNodeInit): Promise<MeshLibp2p> {
  let privateKey = init.privateKey
  if (privateKey == null) {
    if (init.dataDir == null) throw new Error('createMeshNode needs dataDir or privateKey')
    privateKey = await loadOrCreatePeerKey(init.dataDir)
  }
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (init.mdns === true) peerDiscovery.push(mdns())
  return await createLibp2p<MeshServices>({
    start: false,
    privateKey,
    ...(init.logger != null ? { logger: init.logger } : {}),
    addresses: {
      listen: init.listen ?? DEFAULT_LISTEN,
      ...(init.announce != null && init.announce.length > 0 ? { announce: init.announce } : {})
    },
    transports: [tcp()],
    connectionEncrypters: [noise(init.noiseCrypto === 'stock' ? {} : { crypto: fastNoiseCrypto })],
    streamMuxers: [yamux()],
    peerDiscovery,
    connectionManager: {
      maxConnections: init.maxConnections ?? 300,
      inboundConnectionThreshold: init.inboundConnectionThreshold ?? 100,
      maxIncomingPendingConnections: 64
    },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        emitSelf: false,
        globalSignaturePolicy: 'StrictSign',
        // An agent alone, or the first of a mesh, still publishes; nobody hears it, nobody minds.
        allowPublishToZeroTopicPeers: true,
        // Small meshes: send our own messages to every subscriber, not only the mesh peers.
        floodPublish: true
      }),
      redial: redial({ peers: init.bootstrap ?? [], minDelayMs: init.redialMinMs, maxDelayMs: init.redialMaxMs }) as (components: any) => Redial,
      peerExchange: peerExchange({ intervalMs: init.peerAnnounceIntervalMs }) as (components: any) => PeerExchange
    }
  })
}

export type { RedialComponents, PeerExchangeComponents }
