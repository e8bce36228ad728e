import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { ChunkStore, ImageRecord, IngestOptions, IngestResult, Manifest } from '@peerglance/interface'
import { OriginFetch, toRecord } from '../src/index.ts'
import type { GlanceClient, UpstreamImage } from '../src/index.ts'
import { silentLogger } from '@peerglance/interface'

const CHUNK = 1024

function digests (data: Uint8Array): { md5: string, sha512: string } {
  return { md5: createHash('md5').update(data).digest('hex'), sha512: createHash('sha512').update(data).digest('hex') }
}

/** Chunks kept in memory, named by the index of their ingest; what was collected is remembered. */
function memoryChunks (): Pick<ChunkStore, 'ingest' | 'release' | 'collect' | 'read'> & { kept: Map<string, Uint8Array>, collected: string[] } {
  const kept = new Map<string, Uint8Array>()
  const collected: string[] = []
  return {
    kept,
    collected,
    async ingest (source: AsyncIterable<Uint8Array>, opts: IngestOptions): Promise<IngestResult> {
      const parts: Uint8Array[] = []
      for await (const part of source) parts.push(part)
      const data = Buffer.concat(parts)
      if (opts.expectedSize != null && data.byteLength !== opts.expectedSize) throw new Error('size')
      const cids: string[] = []
      for (let i = 0; i * CHUNK < data.byteLength; i++) {
        const cid = createHash('sha256').update(data.subarray(i * CHUNK, (i + 1) * CHUNK)).digest('hex')
        kept.set(cid, data.subarray(i * CHUNK, (i + 1) * CHUNK))
        cids.push(cid)
      }
      return { size: data.byteLength, cids, chunkSize: CHUNK, ...digests(data), head: data.subarray(0, 64) }
    },
    release () {},
    async collect (cids: Iterable<string>, isReferenced: (cid: string) => Promise<boolean>): Promise<number> {
      for (const cid of cids) if (!await isReferenced(cid)) { kept.delete(cid); collected.push(cid) }
      return collected.length
    },
    async * read (manifest: Manifest, start: number, end: number): AsyncGenerator<Uint8Array> {
      yield Buffer.concat(manifest.cids.map(cid => kept.get(cid) as Uint8Array)).subarray(start, end + 1)
    }
  }
}

function setup (truth: Uint8Array, served: Uint8Array, forged: Partial<ImageRecord> = {}) {
  const upstream: UpstreamImage = {
    id: '9d6d7e52-3c3a-4c55-9a51-6b4f4a1c2e01', status: 'active', updated_at: '2026-01-01T00:00:00Z', created_at: '2026-01-01T00:00:00Z',
    name: 'x', visibility: 'public', size: truth.byteLength, checksum: digests(truth).md5, os_hash_algo: 'sha512', os_hash_value: digests(truth).sha512,
    disk_format: 'raw', container_format: 'bare'
  }
  const record = { ...toRecord(upstream), ...forged }
  const added: Array<{ image: ImageRecord, manifest: Manifest }> = []
  const client = {
    image: async () => upstream,
    download: async (_id: string, start: number, end: number) => new Blob([served.subarray(start, end + 1)]).stream()
  } as unknown as GlanceClient
  const chunks = memoryChunks()
  let received = 0
  const origin = new OriginFetch({
    client,
    chunks,
    logger: silentLogger,
    received: n => { received += n },
    metadata: {
      getImage: () => record,
      getManifest: async () => undefined,
      isReferenced: async () => false,
      dataAdded: async (image: ImageRecord, manifest: Manifest) => { added.push({ image, manifest }) }
    }
  })
  return { origin, record, added, chunks, received: () => received }
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<{ data: Buffer, error?: Error }> {
  const parts: Uint8Array[] = []
  try {
    for await (const part of source) parts.push(Buffer.from(part))
    return { data: Buffer.concat(parts) }
  } catch (err) {
    return { data: Buffer.concat(parts), error: err as Error }
  }
}

describe('OriginFetch', () => {
  it('streams a whole read, keeps the chunks and records the manifest once the whole matched the upstream', async () => {
    const data = randomBytes(10 * CHUNK + 7)
    const { origin, record, added, received } = setup(data, data)
    const got = await collect(origin.read(record, 0, data.byteLength - 1))
    expect(got.error).toBeUndefined()
    expect(got.data.equals(data)).toBe(true)
    expect(received()).toBe(data.byteLength)
    expect(added).toHaveLength(1)
    expect(added[0].manifest).toMatchObject({ size: data.byteLength, sha512: digests(data).sha512, staged: false })
  })

  it('keeps nothing and withholds the last bytes when the upstream sends bytes that do not hash to its own os_hash_value', async () => {
    const data = randomBytes(10 * CHUNK + 7)
    const bad = Buffer.from(data)
    bad[5 * CHUNK] ^= 1
    const { origin, record, added, chunks } = setup(data, bad)
    const got = await collect(origin.read(record, 0, data.byteLength - 1))
    expect(got.error?.name).toBe('ChunkUnavailableError')
    expect(got.data.byteLength).toBeLessThan(data.byteLength)
    expect(added).toEqual([])
    expect(chunks.kept.size).toBe(0)
    expect(chunks.collected.length).toBeGreaterThan(0)
  })

  it('refuses to fetch when the mesh\'s record (a peer\'s forgery) disagrees with the upstream', async () => {
    const data = randomBytes(3 * CHUNK)
    const other = randomBytes(3 * CHUNK)
    const { origin, record, added, received } = setup(data, other, { os_hash_value: digests(other).sha512, checksum: digests(other).md5 })
    const got = await collect(origin.read(record, 0, data.byteLength - 1))
    expect(got.error?.message).toMatch(/does not match the upstream/)
    expect(got.data.byteLength).toBe(0)
    expect(received()).toBe(0)
    expect(added).toEqual([])
  })

  it('passes a partial read through from the upstream and keeps nothing', async () => {
    const data = randomBytes(4 * CHUNK)
    const { origin, record, added, chunks } = setup(data, data)
    const got = await collect(origin.read(record, 100, 2 * CHUNK))
    expect(got.data.equals(data.subarray(100, 2 * CHUNK + 1))).toBe(true)
    expect(added).toEqual([])
    expect(chunks.kept.size).toBe(0)
  })
})
