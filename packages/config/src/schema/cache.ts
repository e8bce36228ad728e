import { Type, type Static } from 'typebox'
import { ByteSize } from './byte-size.ts'

export const CacheConfig = Type.Object({
  maxBytes: ByteSize({
    default: '0',
    example: '200GB',
    description: 'Most image data this agent keeps, as a number with an optional unit B, KB, MB, GB or TB (powers of 1024), e.g. 200GB; 0 means maxDiskPercent of the disk that holds dataDir. Quote it in YAML.'
  }),
  maxDiskPercent: Type.Number({
    exclusiveMinimum: 0,
    maximum: 100,
    default: 80,
    description: 'When maxBytes is 0: the share of the disk holding dataDir that image data may use, in percent.'
  }),
  highWatermark: Type.Number({
    exclusiveMinimum: 0,
    maximum: 1,
    default: 0.9,
    description: 'Eviction starts when image data exceeds this share of the cap.'
  }),
  lowWatermark: Type.Number({
    minimum: 0,
    exclusiveMaximum: 1,
    default: 0.75,
    description: 'Eviction stops when image data is back under this share of the cap; below highWatermark.'
  }),
  minReplicas: Type.Integer({
    minimum: 1,
    default: 2,
    description: 'Complete copies of an image that connected peers must hold (checked by asking them, with a random chunk as proof) before this agent evicts its own; so the last copies in the mesh, and an image just seeded here, are never evicted.'
  }),
  reserveBytes: ByteSize({
    default: '256MB',
    example: '1GB',
    description: 'Free disk space image data never takes, whatever the cap, for LevelDB, logs and the file system.'
  }),
  sweepIntervalMs: Type.Integer({
    minimum: 100,
    default: 30000,
    description: 'How often the cache checks its size against the watermarks (it also checks after each image it completes).'
  }),
  prefetchIntervalMs: Type.Integer({
    minimum: 100,
    default: 300000,
    description: 'How long an image queued with Glance\'s cache API (PUT /v2/cache/{id}, glance cache-queue) waits, listed as queued, before it is fetched, as Glance\'s prefetcher runs every cache_prefetcher_interval (300 s). `peerglance prefetch`, orders from other agents and prefetchTags start at once.'
  }),
  prefetchTags: Type.Array(Type.String({ minLength: 1 }), {
    default: [],
    description: 'Images carrying any of these tags are fetched by every agent as soon as they are active, e.g. [prefetch].'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'The image cache: how much image data this agent keeps, and what it evicts first (least recently read, never pinned images or the mesh\'s last copies).'
})
export type CacheConfig = Static<typeof CacheConfig>
