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
    description: 'Shared secret of the mesh. Metadata gossip and sync messages are authenticated with it (HMAC-SHA256) and dropped when they are not, so only agents given the same key change each other\'s images. Empty means any agent that can connect is trusted; chunk data is always verified against its CID either way.'
  }),
  fetchTimeoutMs: Type.Integer({
    default: 5000,
    minimum: 100,
    description: 'How long a download waits for some peer to provide a chunk this agent lacks before answering 503.'
  }),
  syncIntervalMs: Type.Integer({
    default: 30000,
    minimum: 1000,
    description: 'How often the agent reconciles its metadata with one random peer, besides on every new connection.'
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
