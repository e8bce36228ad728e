import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect } from 'vitest'
import type { IngestResult, Manifest } from '@peerglance/interface'
import { cidOf } from '@peerglance/interface'
import { CHUNKS_DIR, FsChunkStore, STAGING_DIR } from '../src/index.ts'

export const KiB = 1024

/** Small chunks keep the tests fast; sizes below are multiples of it. */
export const CHUNK = 64 * KiB

/** Feeds bytes the way an HTTP body arrives: in pieces that do not line up with chunk boundaries. */
export async function * pieces (bytes: Uint8Array, pieceSize = 10_000): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += pieceSize) {
    yield bytes.slice(offset, offset + pieceSize)
  }
}

/** Sends `bytes`, then fails the way a dropped connection does. */
export async function * brokenAfter (bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield * pieces(bytes)
  await new Promise(resolve => setTimeout(resolve, 5))
  throw Object.assign(new Error('aborted'), { code: 'ECONNRESET' })
}

/** Sends `bytes`, then neither ends nor fails: a client that stalls. */
export async function * stalledAfter (bytes: Uint8Array, sent?: () => void): AsyncGenerator<Uint8Array> {
  yield * pieces(bytes)
  sent?.()
  await new Promise(() => {})
}

export function manifestOf (result: IngestResult): Manifest {
  return { size: result.size, chunkSize: result.chunkSize, cids: result.cids, md5: result.md5, sha512: result.sha512, staged: false }
}

export async function concat (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  // Copies each part: the store reuses its read buffers.
  for await (const part of source) parts.push(Buffer.from(part))
  return Buffer.concat(parts)
}

export function digest (algorithm: string, bytes: Uint8Array): string {
  return createHash(algorithm).update(bytes).digest('hex')
}

/** Where the store keeps a chunk's file: `chunks/<x>/<cid>`, x the character before the CID's last. */
export function chunkFile (dir: string, cid: string): string {
  return join(dir, CHUNKS_DIR, cid.slice(-2, -1), cid)
}

/** The CIDs of every chunk file on disk, sorted. */
export async function storedCids (dir: string): Promise<string[]> {
  const cids: string[] = []
  const root = join(dir, CHUNKS_DIR)
  for (const sub of await readdir(root)) cids.push(...await readdir(join(root, sub)))
  return cids.sort()
}

export async function stagingEntries (dir: string): Promise<string[]> {
  return await readdir(join(dir, STAGING_DIR))
}

/** The store's central promise: a file under a CID name holds exactly the bytes of that CID. */
export async function expectEveryChunkToHashToItsName (dir: string): Promise<void> {
  const root = join(dir, CHUNKS_DIR)
  for (const sub of await readdir(root).catch(() => [])) {
    for (const name of await readdir(join(root, sub))) {
      expect(cidOf(await readFile(join(root, sub, name))), `${sub}/${name}`).toBe(name)
    }
  }
}

export function chunksOf (bytes: Uint8Array, chunkSize = CHUNK): string[] {
  const cids: string[] = []
  for (let offset = 0; offset < bytes.length; offset += chunkSize) cids.push(cidOf(bytes.subarray(offset, offset + chunkSize)))
  return cids
}

/**
 * A store of its own for every test of the calling suite, in a temp dir that is removed after the
 * test, once the store is stopped and every chunk file is checked to hash to its name.
 */
export function freshStore (opts: { start?: boolean } = {}): { dir: string, store: FsChunkStore } {
  const current = {} as { dir: string, store: FsChunkStore }
  beforeEach(async () => {
    current.dir = await mkdtemp(join(tmpdir(), 'peerglance-chunk-store-'))
    current.store = new FsChunkStore({ dir: current.dir, chunkSize: CHUNK })
    if (opts.start !== false) await current.store.start()
  })
  afterEach(async () => {
    try {
      await current.store.stop()
      await expectEveryChunkToHashToItsName(current.dir)
    } finally {
      await rm(current.dir, { recursive: true, force: true })
    }
  })
  return current
}
