/** Bytes per chunk: the content-address and transfer unit (p2p-perf REPORT.md, recommendation 1). */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024

/**
 * Chunks of an upload written and hashed at once. 4 with a per-file fdatasync doubled the
 * 1-at-a-time rate (REPORT.md section 6); 8 keeps the thread pool and hash workers fed when they
 * would otherwise sleep and be woken per chunk: 4.1-4.3 CPU-s per GiB against 4.9-5.4 with 4 on a
 * loaded machine (docs/benchmarks.md, upload step 4), for 4 MiB more of chunk buffers per upload.
 */
export const DEFAULT_WRITE_CONCURRENCY = 8

/** How much of an image `IngestResult.head` keeps, enough for qcow2/vmdk/vhd/iso format inspection. */
export const HEAD_SIZE = 64 * 1024

/**
 * Memory for the buffers chunks from peers are received into (chunk-slots.ts), at least 4 chunks:
 * a download has up to 16 fetches in flight and each reader holds two chunks.
 */
export const RECEIVE_SLOTS_BYTES = 24 * 1024 * 1024

/**
 * Memory for the buffers chunk files are read into to be served (chunk-slots.ts), at least 4
 * chunks. A slot goes back once the socket has taken its bytes. In the shaped swarm (8 hosts,
 * 200 Mbit/s, ~25 inbound bulk channels per agent) all 16 were in use at the busiest moments and
 * the 24 receive slots peaked at 14-18; pages of slots never lent are never touched.
 */
export const READ_SLOTS_BYTES = 16 * 1024 * 1024

/** Hash workers kept alive between ingests; more concurrent ingests spawn more and drop the extra when done. */
export const MAX_IDLE_HASHERS = 2
/** How long an idle pair of hash workers lives before it is ended to give back its memory. */
export const HASHER_IDLE_MS = 30_000

export const CHUNKS_DIR = 'chunks'
export const STAGING_DIR = 'staging'
