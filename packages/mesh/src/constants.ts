/** The chunk exchange protocol (chunk-exchange.ts describes the wire format). */
export const CHUNK_PROTOCOL = '/peerglance/chunks/3.0.0'

/** Where agents say how to reach them, so that agents that share a bootstrap peer find each other. */
export const PEERS_TOPIC = 'peerglance/peers/1'

/**
 * Where an agent that needs an image none of its peers holds asks for it: agents that hold it
 * dial the asker (peer-exchange.ts), whose peer set is bounded and may not include any holder.
 */
export const WANT_TOPIC = 'peerglance/want/1'

/** The peer's private key (Ed25519, libp2p protobuf encoding) inside the data directory. */
export const PEER_KEY_FILE = 'peer.key'

export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0']

/**
 * Long-lived chunk streams per peer. One stream carried ~200 MiB/s and four carried ~305 MiB/s of
 * 1 MiB chunks in the research runs (p2p-perf REPORT.md section 3); more only cost CPU.
 */
export const DEFAULT_STREAMS_PER_PEER = 4

/** Requests waiting on one stream at once (the server answers them in order). */
export const DEFAULT_PIPELINE_DEPTH = 2

/**
 * Inbound chunk streams one connection may hold open to us: an honest peer opens
 * DEFAULT_STREAMS_PER_PEER, and each stream may make us hold up to ~32 MiB (queued requests and
 * answers prepared ahead), so 16 bounds what one member that reads nothing can pin to ~512 MiB
 * (256 allowed several GiB), as the bulk channel's 16 proven connections per peer do.
 */
export const DEFAULT_MAX_INBOUND_STREAMS = 16
export const DEFAULT_MAX_OUTBOUND_STREAMS = 64

/** A response frame larger than this ends the stream: no chunk is that big. */
export const MAX_FRAME_BODY = 64 * 1024 * 1024

/** Requests a server queues per stream beyond the one it is answering; more is a protocol error. */
export const MAX_QUEUED_REQUESTS = 64

/** How long one request may wait for its whole response before the stream is reset. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 15_000

/** How long a reader waits for some peer to hold a chunk before ChunkUnavailableError (HTTP 503). */
export const DEFAULT_UNAVAILABLE_TIMEOUT_MS = 5_000

/** Chunks ahead of each reader's position that are fetched before anything else. */
export const DEFAULT_READ_AHEAD = 8

/** Chunk fetches in flight per peer, across all its streams. */
export const DEFAULT_MAX_IN_FLIGHT_PER_PEER = 8

/** Chunk fetches in flight per download session, across all peers. */
export const DEFAULT_MAX_IN_FLIGHT = 16

/**
 * When this agent fetches from a seed a chunk another downloader is responsible for (swarm.ts,
 * "seeding"): a chunk a reader waits for once that downloader has announced nothing for the
 * urgent figure (or the reader has waited the background figure), other chunks once it has been
 * silent for the background figure. A downloader that dies disconnects and loses its share at
 * once; these only catch one that hangs. At 1.5 s, overloaded agents (8 on 2 cores) fell back
 * for 5 % of the chunks (docs/benchmarks.md, "The mesh").
 */
export const DEFAULT_URGENT_FALLBACK_MS = 5_000
export const DEFAULT_BACKGROUND_FALLBACK_MS = 15_000

/** Newly stored chunks are announced in batches this often. */
export const DEFAULT_ANNOUNCE_INTERVAL_MS = 150

/** A session waits this long after it starts, for other downloaders to announce themselves, before it asks seeds for chunks it does not need yet. */
export const DEFAULT_START_GRACE_MS = 100

/** A peer that sent bytes that do not match their CID is not asked again for this long. */
export const DEFAULT_BAD_PEER_MS = 24 * 60 * 60 * 1000

/**
 * Redial of a peer whose dial failed (gone, or cut off): first wait, and the cap of the doubling
 * waits. The cap bounds how long after a partition heals an agent may still wait to redial.
 */
export const DEFAULT_REDIAL_MIN_MS = 250
export const DEFAULT_REDIAL_MAX_MS = 4_000

/**
 * Peer set (peer-exchange.ts): an agent dials random known agents until it holds this many
 * connections, and closes inbound ones above the maximum. gossipsub's mesh takes D = 6 of them
 * per topic (4 to 12); the rest get gossip (IHAVE) and anti-entropy.
 */
export const DEFAULT_PEER_TARGET = 6
export const DEFAULT_MAX_PEERS = 16

/** An agent with enough peers still dials one random other this often, so the overlay stays mixed. */
export const DEFAULT_ROTATE_INTERVAL_MS = 60_000

/**
 * Liveness: every connection is pinged this often (liveness.ts, a yamux ping frame) and closed when a
 * ping gets no answer within the timeout, so a connection that died silently (a cut cable, a
 * partition, a frozen host) is noticed within about the sum, and the peer redialled.
 */
export const DEFAULT_PING_INTERVAL_MS = 5_000
export const DEFAULT_PING_TIMEOUT_MS = 5_000

/** How often an agent repeats its addresses on the peers topic. */
export const DEFAULT_PEER_ANNOUNCE_INTERVAL_MS = 30_000
