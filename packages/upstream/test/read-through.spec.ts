import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { ImageReader, Manifest } from '@peerglance/interface'
import { ReadThrough, toRecord } from '../src/index.ts'
import type { OriginFetch, UpstreamImage } from '../src/index.ts'
import { silentLogger } from '@peerglance/interface'

const sha512 = (b: Uint8Array): string => createHash('sha512').update(b).digest('hex')

/** An upstream image whose bytes are `truth`, and a mesh whose chunks hold `held` under a manifest claiming `claimed`. */
function setup (truth: Uint8Array, held: Uint8Array, claimed = sha512(truth), upstreamAnswers = true) {
  const upstream: UpstreamImage = {
    id: '1b0f5a3e-8a55-4a55-9c1e-6f4b3a2c1d00', status: 'active', updated_at: '2026-01-01T00:00:00Z', size: truth.byteLength,
    checksum: 'c', os_hash_algo: 'sha512', os_hash_value: sha512(truth), visibility: 'public'
  }
  const record = toRecord(upstream)
  const manifest: Manifest = { size: held.byteLength, chunkSize: 1024, cids: ['x'], md5: 'm', sha512: claimed, staged: false }
  let reads = 0
  const inner: ImageReader = {
    async * read (_id, _m, start, end) {
      reads++
      for (let at = start; at <= end; at += 1000) yield held.subarray(at, Math.min(end + 1, at + 1000))
    }
  }
  const origin = {
    upstreamHash: async () => upstreamAnswers ? { algo: 'sha512', value: upstream.os_hash_value } : undefined,
    async * passThrough (_image: unknown, start: number, end: number) { yield truth.subarray(start, end + 1) }
  } as unknown as OriginFetch
  const rt = new ReadThrough({ origin, metadata: { getImage: () => record, manifestCidOf: () => 'cid' }, logger: silentLogger })
  return { reader: rt.reader(inner), record, manifest, reads: () => reads }
}

async function readAll (reader: ImageReader, id: string, manifest: Manifest): Promise<{ data: Buffer, error?: Error }> {
  const parts: Buffer[] = []
  try {
    for await (const part of reader.read(id, manifest, 0, manifest.size - 1)) parts.push(Buffer.from(part))
    return { data: Buffer.concat(parts) }
  } catch (err) {
    return { data: Buffer.concat(parts), error: err as Error }
  }
}

describe('ReadThrough: an upstream image\'s data from the mesh', () => {
  it('is served after its first whole read here hashed to the upstream\'s own os_hash_value', async () => {
    const data = randomBytes(10_000)
    const { reader, record, manifest } = setup(data, data)
    const first = await readAll(reader, record.id, manifest)
    expect(first.error).toBeUndefined()
    expect(first.data.equals(data)).toBe(true)
  })

  it('is refused, its last bytes withheld, when a peer put other bytes under it with a manifest claiming the right hash', async () => {
    const data = randomBytes(10_000)
    const other = randomBytes(10_000)
    const { reader, record, manifest, reads } = setup(data, other)
    const got = await readAll(reader, record.id, manifest)
    expect(got.error?.name).toBe('ChunkUnavailableError')
    expect(got.data.byteLength).toBeLessThan(other.byteLength)
    // Known bad from then on: the upstream's bytes, passed through; the mesh's are not read again.
    const again = await readAll(reader, record.id, manifest)
    expect(again.error).toBeUndefined()
    expect(again.data.equals(data)).toBe(true)
    expect(reads()).toBe(1)
  })

  it('is not read at all when its manifest claims another hash than the upstream\'s: the upstream\'s bytes are passed through', async () => {
    const data = randomBytes(10_000)
    const other = randomBytes(10_000)
    const { reader, record, manifest, reads } = setup(data, other, sha512(other))
    const got = await readAll(reader, record.id, manifest)
    expect(got.error).toBeUndefined()
    expect(got.data.equals(data)).toBe(true)
    expect(reads()).toBe(0)
  })

  it('with the upstream down, is checked against the record\'s os_hash_value as mirrored', async () => {
    const data = randomBytes(10_000)
    const good = setup(data, data, undefined, false)
    expect((await readAll(good.reader, good.record.id, good.manifest)).error).toBeUndefined()
    const bad = setup(data, randomBytes(10_000), undefined, false)
    expect((await readAll(bad.reader, bad.record.id, bad.manifest)).error?.name).toBe('ChunkUnavailableError')
  })
})
