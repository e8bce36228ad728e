export { FsChunkStore } from './fs-chunk-store.ts'
export { collectGarbage, letGo, letGoSince } from './young-gc.ts'
export type { FsChunkStoreInit } from './fs-chunk-store.ts'
export { DEFAULT_CHUNK_SIZE, DEFAULT_WRITE_CONCURRENCY, HEAD_SIZE, CHUNKS_DIR, STAGING_DIR } from './constants.ts'
