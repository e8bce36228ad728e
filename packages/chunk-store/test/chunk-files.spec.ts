import { randomBytes } from 'node:crypto'
import { link, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { cidOf } from '@peerglance/interface'
import { alignedChunks } from '../src/aligned-chunks.ts'
import { ChunkFiles } from '../src/chunk-files.ts'
import { CHUNKS_DIR, STAGING_DIR } from '../src/constants.ts'
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

describe('ChunkFiles layout', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'peerglance-chunk-layout-'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const chunks = (count: number): Array<{ cid: string, bytes: Buffer }> => Array.from({ length: count }, () => {
    const bytes = randomBytes(1000)
    return { cid: cidOf(bytes), bytes }
  })

  it('fans chunk files out into at most 32 directories, one per base32 character', async () => {
    const files = new ChunkFiles(dir, new Pins())
    await files.prepare()
    for (const { cid, bytes } of chunks(300)) await files.put(cid, bytes, { durableName: false })
    const subs = await readdir(join(dir, CHUNKS_DIR))
    expect(subs.length).toBeLessThanOrEqual(32)
    for (const sub of subs) expect(sub).toMatch(/^[a-z2-7]$/)
    let names = 0
    for (const sub of subs) names += (await readdir(join(dir, CHUNKS_DIR, sub))).length
    expect(names).toBe(300)
  })

  it('moves a store of the two-character layout, byte for byte, also after a move cut short, and leaves what is not a chunk', async () => {
    const old = chunks(40)
    const root = join(dir, CHUNKS_DIR)
    for (const { cid, bytes } of old) {
      await mkdir(join(root, cid.slice(-3, -1)), { recursive: true })
      await writeFile(join(root, cid.slice(-3, -1), cid), bytes)
    }
    // A crash between a link and its unlink left one chunk under both names.
    const [cut] = old
    await mkdir(join(root, cut.cid.slice(-2, -1)), { recursive: true })
    await link(join(root, cut.cid.slice(-3, -1), cut.cid), join(root, cut.cid.slice(-2, -1), cut.cid))
    // Not a chunk: kept, and so is its directory.
    const foreign = join(root, old[1].cid.slice(-3, -1), 'notes.txt')
    await writeFile(foreign, 'mine')

    const files = new ChunkFiles(dir, new Pins())
    await files.prepare()
    expect(files.moved).toBe(40)
    const listed: string[] = []
    for await (const cid of files.list()) listed.push(cid)
    expect(listed.sort()).toEqual(old.map(c => c.cid).sort())
    expect(files.bytes).toBe(40 * 1000)
    for (const { cid, bytes } of old) {
      expect(await files.has(cid)).toBe(true)
      expect(files.path(cid)).toBe(join(root, cid.slice(-2, -1), cid))
      expect((await readFile(files.path(cid))).equals(bytes)).toBe(true)
    }
    expect(await readFile(foreign, 'utf8')).toBe('mine')
    expect((await readdir(root)).filter(sub => sub.length !== 1)).toEqual([old[1].cid.slice(-3, -1)])

    // Nothing left to move; the same chunks again.
    const again = new ChunkFiles(dir, new Pins())
    await again.prepare()
    expect(again.moved).toBe(0)
    const relisted: string[] = []
    for await (const cid of again.list()) relisted.push(cid)
    expect(relisted.sort()).toEqual(listed.sort())
  })
})
