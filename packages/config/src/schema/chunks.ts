import { Type, type Static } from 'typebox'

export const ChunksConfig = Type.Object({
  chunkSize: Type.Integer({
    minimum: 4096,
    // libp2p's byteStream/lpStream buffer 4 MiB by default and reset the stream beyond it
    // (shared research p2p-perf/REPORT.md), so a chunk must fit in one buffer.
    maximum: 4194304,
    default: 1048576,
    description: 'Bytes per image chunk, the unit that is hashed, stored and exchanged with peers; at most 4 MiB, the size of a libp2p stream buffer.'
  }),
  writeConcurrency: Type.Integer({
    minimum: 1,
    maximum: 64,
    default: 8,
    description: 'Chunks of one upload that are hashed and written to disk at the same time.'
  }),
  encryptionKeyFile: Type.String({
    default: '',
    description: 'File holding a 32-byte key (raw, or 64 hex digits as openssl rand -hex 32 prints): chunk files are then encrypted at rest with AES-256-GCM, and a file changed on disk is detected when read, dropped and fetched again from a peer. Chunk names (CIDs) stay over the plaintext. Empty means chunk files are plain. The agent refuses to start if the files were sealed with another key, or if the key is removed.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'The content-addressed chunk store under dataDir.'
})
export type ChunksConfig = Static<typeof ChunksConfig>
