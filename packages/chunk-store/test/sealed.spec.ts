import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { cidOf } from '@peerglance/interface'
import { FsChunkStore } from '../src/index.ts'
import { CHUNK, chunkFile, concat, manifestOf, pieces, storedCids } from './fixtures.ts'

const dirs: string[] = []
const stores: FsChunkStore[] = []
afterEach(async () => {
  for (const s of stores.splice(0)) await s.stop()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function sealedStore (key = randomBytes(32).toString('hex'), dir?: string): Promise<{ store: FsChunkStore, dir: string, keyFile: string }> {
  dir ??= await mkdtemp(join(tmpdir(), 'sealed-store-'))
  dirs.push(dir)
  const keyFile = join(dir, '..', `${dir.split('/').pop()}.key`)
  await writeFile(keyFile, `${key}\n`)
  dirs.push(keyFile)
  const store = new FsChunkStore({ dir, chunkSize: CHUNK, encryptionKeyFile: keyFile })
  await store.start()
  stores.push(store)
  return { store, dir, keyFile }
}

const fileOf = chunkFile

describe('chunk files encrypted at rest', () => {
  it('hold no plaintext, keep CIDs over the plaintext, and read back byte-exact', async () => {
    const { store, dir } = await sealedStore()
    const bytes = randomBytes(3 * CHUNK + 123)
    const result = await store.ingest(pieces(bytes), { maxBytes: 1e9 })
    store.release(result.cids)
    expect(result.cids[0]).toBe(cidOf(bytes.subarray(0, CHUNK)))
    const onDisk = await readFile(fileOf(dir, result.cids[0]))
    expect(onDisk.byteLength).toBe(CHUNK + 28)
    expect(onDisk.includes(bytes.subarray(0, 64))).toBe(false)
    expect((await concat(store.read(manifestOf(result), 0, bytes.length - 1))).equals(bytes)).toBe(true)
    expect((await concat(store.read(manifestOf(result), CHUNK - 5, 2 * CHUNK + 9))).equals(bytes.subarray(CHUNK - 5, 2 * CHUNK + 10))).toBe(true)
    const peerChunk = randomBytes(CHUNK)
    await store.putChunk(cidOf(peerChunk), peerChunk)
    expect(Buffer.from(await store.readChunk(cidOf(peerChunk))).equals(peerChunk)).toBe(true)
  })

  it('detect a file changed on disk: no byte of it is served, the file is dropped', async () => {
    const { store, dir } = await sealedStore()
    const bytes = randomBytes(2 * CHUNK)
    const result = await store.ingest(pieces(bytes), { maxBytes: 1e9 })
    store.release(result.cids)
    const victim = fileOf(dir, result.cids[1])
    const sealed = await readFile(victim)
    sealed[100] ^= 1
    await writeFile(victim, sealed)
    const got: Buffer[] = []
    await expect((async () => { for await (const part of store.read(manifestOf(result), 0, bytes.length - 1)) got.push(Buffer.from(part)) })())
      .rejects.toMatchObject({ name: 'ChunkUnavailableError' })
    expect(Buffer.concat(got).equals(bytes.subarray(0, CHUNK))).toBe(true)
    expect(await store.has(result.cids[1])).toBe(false)
    // A chunk file copied under another chunk's name does not open either.
    await writeFile(fileOf(dir, result.cids[1]), await readFile(fileOf(dir, result.cids[0])))
    await expect(store.readChunk(result.cids[1])).rejects.toMatchObject({ name: 'ChunkUnavailableError' })
    expect(await storedCids(dir)).toEqual([result.cids[0]])
  })

  it('refuse to start without the key, or with another one, once files are sealed', async () => {
    const { store, dir } = await sealedStore()
    await store.putChunk(cidOf(Buffer.from('x')), Buffer.from('x'))
    await store.stop()
    const plain = new FsChunkStore({ dir, chunkSize: CHUNK })
    await expect(plain.start()).rejects.toThrow(/encrypted: set chunks.encryptionKeyFile/)
    const keyFile = join(dir, 'other.key')
    await writeFile(keyFile, randomBytes(32))
    const other = new FsChunkStore({ dir, chunkSize: CHUNK, encryptionKeyFile: keyFile })
    await expect(other.start()).rejects.toThrow(/encrypted with another key/)
  })
})
