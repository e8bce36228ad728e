import { readFile } from 'node:fs/promises'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createLibp2p } from 'libp2p'
import type { ComponentLogger, Libp2p, PeerDiscovery, PrivateKey } from '@libp2p/interface'
import { DEFAULT_LISTEN } from './constants.ts'
import { Membership, MembershipError, memberNoise, mintCredential } from './membership.ts'
import type { Credential, MembershipInit } from './membership.ts'
import { toHex } from './bytes.ts'
import { fastNoiseCrypto } from './noise-crypto.ts'
import { loadOrCreatePeerKey } from './peer-key.ts'
import { liveness } from './liveness.ts'
import { windowUpdatesAtHalf } from './yamux-window.ts'
import { skipRepeatedProtocolMerges } from './stream-protocols.ts'
import type { Liveness } from './liveness.ts'
import { peerExchange } from './peer-exchange.ts'
import type { PeerExchange, PeerExchangeComponents } from './peer-exchange.ts'

export interface MeshNodeInit {
  /** Holds `peer.key`; required unless `privateKey` is given. */
  dataDir?: string
  /** Use this key instead of the one in `dataDir`. */
  privateKey?: PrivateKey
  /** Multiaddrs to listen on (default `/ip4/127.0.0.1/tcp/0`). */
  listen?: string[]
  /** Multiaddrs to advertise instead of the listen addresses (NAT, containers). */
  announce?: string[]
  /** Peers (multiaddrs with `/p2p/<id>`) dialled at start and whenever the agent is short of peers. */
  bootstrap?: string[]
  /** Find peers on the local network by mDNS (off by default). */
  mdns?: boolean
  /** First and largest wait before a peer whose dial failed is dialled again. */
  redialMinMs?: number
  redialMaxMs?: number
  /** How often each agent repeats its addresses to the others (peer-exchange.ts). */
  peerAnnounceIntervalMs?: number
  /** Connections an agent dials until it holds, and the most it keeps (peer-exchange.ts). */
  peerTarget?: number
  maxPeers?: number
  /** How often every connection is pinged, and how long a ping may take before the connection is closed. */
  pingIntervalMs?: number
  pingTimeoutMs?: number
  /** Whether this agent holds an image: it then dials an agent that asks for it (peer-exchange.ts). */
  holds?: (imageId: string) => Promise<boolean>
  /** The site this agent announces itself in (peer-exchange.ts). */
  site?: string
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
  /**
   * Who may connect (membership.ts). Without it the mesh secret is empty: only allowed when
   * every listen address is loopback.
   */
  membership?: MembershipInit
  /** libp2p's ComponentLogger; by default libp2p's own (the `DEBUG=libp2p*,peerglance*` variable). */
  logger?: ComponentLogger
}

export type MeshServices = {
  identify: Identify
  ping: Ping
  pubsub: GossipSub
  peerExchange: PeerExchange
  liveness: Liveness
  // libp2p's ServiceMap wants an index signature; the lead's metadata sync adds no service here.
  [name: string]: unknown
}

export type MeshLibp2p = Libp2p<MeshServices>

/**
 * A libp2p node as every agent runs it, not started: TCP, Noise, yamux (p2p-perf REPORT.md
 * recommendations 2 and 3), identify, ping and gossipsub with signed messages only. The peer id
 * comes from `<dataDir>/peer.key`, made on first use.
 */
export async function createMeshNode (init: MeshNodeInit, identity?: MeshIdentity): Promise<MeshLibp2p> {
  const { privateKey, membership, own } = identity ?? await meshIdentity(init)
  windowUpdatesAtHalf()
  const listen = init.listen ?? DEFAULT_LISTEN
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (init.mdns === true) peerDiscovery.push(mdns())
  const node = await createLibp2p<MeshServices>({
    start: false,
    privateKey,
    ...(init.logger != null ? { logger: init.logger } : {}),
    addresses: {
      listen,
      ...(init.announce != null && init.announce.length > 0 ? { announce: init.announce } : {})
    },
    transports: [tcp()],
    connectionEncrypters: [memberNoise(membership, own, init.noiseCrypto === 'stock' ? {} : { crypto: fastNoiseCrypto })],
    connectionGater: membership.gater(),
    streamMuxers: [yamux({ enableKeepAlive: false })],
    peerDiscovery,
    connectionManager: {
      maxConnections: init.maxConnections ?? 300,
      inboundConnectionThreshold: init.inboundConnectionThreshold ?? 100,
      maxIncomingPendingConnections: 64
    },
    // Liveness is ours (liveness.ts): a yamux ping frame per connection and round, not a ping stream.
    connectionMonitor: { enabled: false },
    services: {
      identify: identify(),
      // Answers the ping streams of agents that still run libp2p's connection monitor.
      ping: ping(),
      liveness: liveness({ intervalMs: init.pingIntervalMs, timeoutMs: init.pingTimeoutMs }),
      pubsub: gossipsub({
        emitSelf: false,
        globalSignaturePolicy: 'StrictSign',
        // An agent alone, or the first of a mesh, still publishes; nobody hears it, nobody minds.
        allowPublishToZeroTopicPeers: true,
        // Our own messages go to every connected subscriber (at most maxPeers, so bounded at any
        // mesh size), not only the D mesh peers: one hop fewer, and metadata sync reconciles at
        // once with any connected peer a publish did not reach (metadata-sync.ts).
        floodPublish: true,
        // Duplicates are known by author and sequence number before their signature is checked:
        // without this every copy a flood-published message arrives in was verified (Ed25519, the
        // largest cost of the swarm when holdings went over gossip; docs/benchmarks.md, issue 8).
        // Only messages that passed the check are remembered, so a forgery cannot shadow one.
        fastMsgIdFn: msg => msg.from != null && msg.seqno != null ? `${toHex(msg.from)}/${toHex(msg.seqno)}` : '',
        // gossipsub's defaults, said here because the peer set is sized for them (constants.ts):
        // each agent forwards to 6 (4..12) peers per topic and gossips IHAVE to 6 more.
        D: 6,
        Dlo: 4,
        Dhi: 12,
        Dlazy: 6,
        // No penalty for many peers on one IP address (gossipsub's P6, -5 per extra peer squared
        // past 10): it guards an open network against Sybils from one host, which membership
        // (membership.ts) already keeps out, and it made agents sharing an address (a test
        // machine, a NAT) drop each other's messages: with 15 peers on 127.0.0.1 an agent scored
        // each one -125, below the graylist threshold (docs/benchmarks.md, 8c').
        scoreParams: { IPColocationFactorWeight: 0 }
      }),
      peerExchange: peerExchange({
        bootstrap: init.bootstrap,
        intervalMs: init.peerAnnounceIntervalMs,
        target: init.peerTarget,
        maxPeers: init.maxPeers,
        minDelayMs: init.redialMinMs,
        maxDelayMs: init.redialMaxMs,
        holds: init.holds,
        site: init.site
      }) as (components: any) => PeerExchange
    }
  })
  skipRepeatedProtocolMerges(node.peerStore)
  return node
}

/** Who this agent is (its libp2p key) and how it proves it belongs to the mesh: libp2p and the bulk channel use both. */
export interface MeshIdentity {
  privateKey: PrivateKey
  membership: Membership
  own: Credential
}

export async function meshIdentity (init: MeshNodeInit): Promise<MeshIdentity> {
  let privateKey = init.privateKey
  if (privateKey == null) {
    if (init.dataDir == null) throw new Error('createMeshNode needs dataDir or privateKey')
    privateKey = await loadOrCreatePeerKey(init.dataDir)
  }
  const membershipInit = init.membership ?? {}
  const own = ownCredential(membershipInit, peerIdFromPrivateKey(privateKey).toString(), init.listen ?? DEFAULT_LISTEN,
    membershipInit.credentialFile == null || membershipInit.credentialFile === '' ? undefined : await readFile(membershipInit.credentialFile, 'utf8'))
  return { privateKey, membership: new Membership(membershipInit), own }
}

/**
 * The credential this agent shows: the operator's (checked here, so a wrong one fails at start,
 * not at every connection), or one minted from the mesh secret. An empty secret on an address
 * other hosts can reach would admit anyone, so it is refused.
 */
function ownCredential (init: MembershipInit, peer: string, listen: string[], text: string | undefined): Credential {
  if (init.operator != null && init.operator !== '') {
    if (text == null) throw new MembershipError('mesh.operatorKey is set but this agent has no credential (mesh.credentialFile)')
    let credential: Credential
    try {
      credential = JSON.parse(text) as Credential
    } catch {
      throw new MembershipError('the mesh credential is not valid JSON')
    }
    if (credential.peer !== peer) throw new MembershipError(`the mesh credential names peer ${String(credential.peer)}, not this agent (${peer})`)
    if (credential.exp !== 0 && credential.exp < Date.now()) throw new MembershipError('the mesh credential has expired')
    return credential
  }
  if ((init.secret ?? '') === '' && !listen.every(isLoopback)) {
    throw new MembershipError(`mesh.key is empty but the mesh listens on ${listen.filter(a => !isLoopback(a)).join(', ')}: any host could join. Set mesh.key (e.g. openssl rand -hex 32) or mesh.operatorKey`)
  }
  return mintCredential(init.secret ?? '', peer)
}

function isLoopback (addr: string): boolean {
  return /^\/ip4\/127\.\d+\.\d+\.\d+\//.test(addr) || addr.startsWith('/ip6/::1/')
}

export type { PeerExchangeComponents }
