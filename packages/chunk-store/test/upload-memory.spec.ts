import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { collectGarbage, FsChunkStore } from '../src/index.ts'
import { ImageHasher } from '../src/image-hasher.ts'
import { digest, pieces } from './fixtures.ts'

const MiB = 1024 * 1024

describe('FsChunkStore ingest memory', () => {
  let dir: string
  let store: FsChunkStore

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'peerglance-upload-memory-'))
    store = new FsChunkStore({ dir, chunkSize: MiB, writeConcurrency: 8 })
    await store.start()
  })

  afterEach(async () => {
    await store.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('reuses its chunk buffers from one upload to the next: RSS does not grow by them per upload', async () => {
    // 9 chunks fill all 9 buffers (8 in flight and the one being filled) of each upload.
    const data = randomBytes(9 * MiB + 1)
    const upload = async (): Promise<void> => {
      const result = await store.ingest(pieces(data, 64 * 1024), { maxBytes: data.length })
      expect(result.sha512).toBe(digest('sha512', data))
    }
    await upload()
    collectGarbage('major')
    const before = process.memoryUsage.rss()
    for (let i = 0; i < 5; i++) await upload()
    collectGarbage('major')
    // A fresh memory per upload stayed alive in the hash workers, which seldom collect: 5 more
    // uploads grew RSS by ~45 MB (9 MiB each); reused, by ~0.
    expect((process.memoryUsage.rss() - before) / 1e6).toBeLessThan(20)
  })

  it('starts its hash workers without a TypeScript loader each: two cost less than 24 MB of RSS', async () => {
    collectGarbage('major')
    const before = process.memoryUsage.rss()
    const hasher = new ImageHasher()
    try {
      const [buffer] = hasher.chunkBuffers(MiB, 1)
      buffer.fill(7)
      await hasher.update(buffer)
      expect(await hasher.digest()).toEqual({ md5: digest('md5', buffer), sha512: digest('sha512', buffer) })
      // Loaded from a .ts file, each worker set up Node's type stripper: 31-36 MB for the two in
      // this test, 14-16 as scripts.
      expect((process.memoryUsage.rss() - before) / 1e6).toBeLessThan(24)
    } finally {
      await hasher.terminate()
    }
  })
})
