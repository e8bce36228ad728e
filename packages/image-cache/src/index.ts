export { LruImageCache } from './image-cache.ts'
export type { Holdings, ImageCacheComponents, ImageCacheInit } from './image-cache.ts'
export { bytesToFree, evictionOrder } from './eviction.ts'
export type { Candidate, Pressure } from './eviction.ts'
