import { Type, type Static } from 'typebox'

const Multiaddr = Type.String({
  pattern: '^/',
  errorMessage: 'must be a multiaddr starting with /, e.g. /ip4/0.0.0.0/tcp/4001'
})

export const MeshConfig = Type.Object({
  listen: Type.Array(Multiaddr, {
    default: ['/ip4/127.0.0.1/tcp/0'],
    description: 'libp2p multiaddrs to listen on for peer agents. The default is loopback on a random port, so a lone agent is not reachable from other hosts; use e.g. /ip4/0.0.0.0/tcp/4001 to join a mesh.'
  }),
  bootstrap: Type.Array(Multiaddr, {
    default: [],
    description: 'Multiaddrs of agents to dial at start, each ending in /p2p/PEER_ID, e.g. /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW...'
  }),
  key: Type.String({
    default: '',
    description: 'Shared secret of the mesh (e.g. the output of openssl rand -hex 32). Every agent proves it holds it right after the encrypted handshake, before any protocol runs; a peer that cannot is disconnected. Empty is refused unless every mesh.listen address is loopback. Whoever holds the secret can join with a new peer id, so a leaked secret is revoked by changing it on every agent; use mesh.operatorKey for per-agent revocation.'
  }),
  operatorKey: Type.String({
    default: '',
    description: 'Peer id (12D3KooW...) of the operator\'s Ed25519 key. When set, an agent joins only with a credential that key signed for its own peer id (mesh.credentialFile, made by peerglance credential), and mesh.key is not used for membership.'
  }),
  credentialFile: Type.String({
    default: '',
    description: 'File holding this agent\'s membership credential signed by mesh.operatorKey (JSON, as peerglance credential prints it).'
  }),
  revokedPeers: Type.Array(Type.String({ pattern: '^[1-9A-HJ-NP-Za-km-z]+$' }), {
    default: [],
    description: 'Peer ids refused whatever credential they show: connections to and from them are closed right after the handshake, and records they signed are no longer accepted.'
  }),
  fetchTimeoutMs: Type.Integer({
    default: 5000,
    minimum: 100,
    description: 'How long a download waits for some peer to provide a chunk this agent lacks before answering 503.'
  }),
  syncIntervalMs: Type.Integer({
    default: 2000,
    minimum: 100,
    description: 'How often the agent reconciles its metadata with the next of its connected peers in turn, besides on every new connection, whenever gossip missed a peer and when a peer\'s pings say it holds other records. Peers whose last ping said they hold the same records are passed over (and reconciled every 5 minutes). When nothing differs a sync costs one small round trip.'
  }),
  bulkPort: Type.Integer({
    default: 0,
    minimum: -1,
    maximum: 65535,
    description: 'TCP port of the bulk channel, on the host of the first mesh.listen address: chunks travel between agents over TLS 1.3 there, proven by the same peer ids and membership credentials as libp2p, while metadata and control stay on libp2p. 0 picks any free port (peers learn it over libp2p); set a fixed port where a firewall must allow it; -1 turns the channel off (chunks then go over libp2p).'
  }),
  mdns: Type.Boolean({
    default: false,
    description: 'Find peers on the local network segment with multicast DNS. Off by default because hypervisor networks often block multicast or span several segments.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'The libp2p mesh over which agents share image metadata and chunks.'
})
export type MeshConfig = Static<typeof MeshConfig>
