import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { cidOf } from '@peerglance/interface'
import { alignedChunks } from '../src/aligned-chunks.ts'
import { ChunkFiles } from '../src/chunk-files.ts'
import { STAGING_DIR } from '../src/constants.ts'
import { Pins } from '../src/pins.ts'

describe('ChunkFiles writes', () => {
  let dir: string
  let files: ChunkFiles

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'peerglance-chunk-files-'))
    files = new ChunkFiles(dir, new Pins())
    await files.prepare()
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function putAndRead (bytes: Uint8Array): Promise<Buffer> {
    const cid = cidOf(bytes)
    expect(await files.put(cid, bytes, { aligned: true })).toBe(true)
    expect(await readdir(join(dir, STAGING_DIR))).toEqual([])
    return await readFile(files.path(cid))
  }

  it('stores aligned chunks, whole and partial, byte for byte', async () => {
    const [whole, partial] = alignedChunks(256 * 1024, 2)
    whole.set(randomBytes(whole.length))
    partial.set(randomBytes(partial.length))
    expect((await putAndRead(whole)).equals(whole)).toBe(true)
    // A length O_DIRECT cannot write goes through the page cache.
    const tail = partial.subarray(0, 1000)
    expect((await putAndRead(tail)).equals(tail)).toBe(true)
  })

  it('falls back to the page cache when the kernel refuses a direct write, and loses nothing', async () => {
    // Said to be aligned but 8 bytes off any block boundary: O_DIRECT answers EINVAL.
    const odd = new Uint8Array(new SharedArrayBuffer(64 * 1024 + 4096), 8, 64 * 1024)
    odd.set(randomBytes(odd.length))
    expect((await putAndRead(odd)).equals(odd)).toBe(true)
    const [next] = alignedChunks(64 * 1024, 1)
    next.set(randomBytes(next.length))
    expect((await putAndRead(next)).equals(next)).toBe(true)
  })
})
