import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { ChunkStore, ImageRecord, IngestOptions, IngestResult, Manifest } from '@peerglance/interface'
import { setTimeout as sleep } from 'node:timers/promises'
import { OriginFetch, PieceBoard, parseBoardRequest, toRecord } from '../src/index.ts'
import type { BoardRequest, GlanceClient, PiecePeers, PieceRequest, UpstreamImage } from '../src/index.ts'
import { silentLogger } from '@peerglance/interface'
import { rank } from '../src/rendezvous.ts'

const CHUNK = 1024
/** The piece size every agent uses for these images (4 MiB, whole chunks). */
const PIECE = 4 * 1024 * 1024

function digests (data: Uint8Array): { md5: string, sha512: string } {
  return { md5: createHash('md5').update(data).digest('hex'), sha512: createHash('sha512').update(data).digest('hex') }
}

/** Chunks kept in memory, named by the index of their ingest; what was collected is remembered. */
function memoryChunks (): Pick<ChunkStore, 'chunkSize' | 'ingest' | 'release' | 'collect' | 'read'> & { kept: Map<string, Uint8Array>, collected: string[] } {
  const kept = new Map<string, Uint8Array>()
  const collected: string[] = []
  return {
    chunkSize: CHUNK,
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

/** The upstream: an image whose record says `truth`, whose bytes are `served`; it counts what it sends. */
function upstreamOf (truth: Uint8Array, served: Uint8Array, partDelayMs = 0) {
  const image: UpstreamImage = {
    id: '9d6d7e52-3c3a-4c55-9a51-6b4f4a1c2e01', status: 'active', updated_at: '2026-01-01T00:00:00Z', created_at: '2026-01-01T00:00:00Z',
    name: 'x', visibility: 'public', size: truth.byteLength, checksum: digests(truth).md5, os_hash_algo: 'sha512', os_hash_value: digests(truth).sha512,
    disk_format: 'raw', container_format: 'bare'
  }
  const ranges: Array<[number, number]> = []
  const client = {
    image: async () => image,
    download: async (_id: string, start: number, end: number) => {
      ranges.push([start, end])
      if (partDelayMs === 0) return new Blob([served.subarray(start, end + 1)]).stream()
      // Slowly, in parts, as a real upstream under load.
      return ReadableStream.from((async function * () {
        for (let at = start; at <= end; at += 256 * 1024) {
          await sleep(partDelayMs)
          yield served.subarray(at, Math.min(end + 1, at + 256 * 1024))
        }
      })())
    }
  } as unknown as GlanceClient
  return { image, client, ranges, sent: () => ranges.reduce((n, [s, e]) => n + e - s + 1, 0) }
}

type Upstream = ReturnType<typeof upstreamOf>

interface TestAgent {
  id: string
  origin: OriginFetch
  record: ImageRecord
  added: Array<{ image: ImageRecord, manifest: Manifest }>
  chunks: ReturnType<typeof memoryChunks>
  received: () => number
  liars: string[]
}

/**
 * `count` agents reading through `upstream`, their piece boards and pieces wired to each other in
 * memory; agent `liar` (if any) flips a byte of every piece it sends.
 */
function agentsOf (count: number, upstream: Upstream, opts: { forged?: Partial<ImageRecord>, liar?: number, stallingBoard?: boolean, waitMs?: number } = {}): TestAgent[] {
  const agents: TestAgent[] = []
  const ids = Array.from({ length: count }, (_, i) => `agent-${i}`)
  // With `stallingBoard`, the agent that keeps the image's board answers `wait` to everything.
  const staller = opts.stallingBoard === true ? rank(upstream.image.id, ids)[0] : undefined
  for (const id of ids) {
    const record = { ...toRecord(upstream.image), ...opts.forged }
    const added: TestAgent['added'] = []
    const chunks = memoryChunks()
    const liars: string[] = []
    const referenced = new Set<string>()
    let received = 0
    const peers: PiecePeers = {
      self: id,
      known: async () => ids.filter(other => other !== id),
      ask: async (peer: string, request: BoardRequest) => peer === staller ? { wait: true } : await byId(peer).origin.board(id, request),
      piece: async function * (peer: string, request: PieceRequest) {
        const bytes = await byId(peer).origin.piece(request)
        if (bytes == null) throw new Error('refused')
        let first = peer === ids[opts.liar ?? -1]
        for await (const part of bytes) {
          const copy = Buffer.from(part)
          if (first) copy[0] ^= 1
          first = false
          yield copy
        }
      }
    }
    const origin = new OriginFetch({
      client: upstream.client,
      chunks,
      peers,
      logger: process.env.DEBUG_ORIGIN != null ? { ...silentLogger, warn: (o: unknown, m: string) => { console.log(id, 'WARN', m, o) }, error: (o: unknown, m: string) => { console.log(id, 'ERROR', m, o) }, debug: (o: unknown, m: string) => { console.log(id, 'debug', m, o) }, child: () => silentLogger } as never : silentLogger,
      received: n => { received += n },
      lied: peer => { liars.push(peer) },
      metadata: {
        getImage: () => record,
        getManifest: async () => added[0]?.manifest,
        isReferenced: async cid => referenced.has(cid),
        dataAdded: async (image: ImageRecord, manifest: Manifest) => {
          added.push({ image, manifest })
          for (const cid of manifest.cids) referenced.add(cid)
        }
      }
    }, { waitMs: opts.waitMs })
    agents.push({ id, origin, record, added, chunks, received: () => received, liars })
  }
  function byId (id: string): TestAgent { return agents.find(a => a.id === id) as TestAgent }
  return agents
}

/** Once the agent's fetch recorded its manifest, or dropped what it fetched (bounded wait). */
async function settled (agent: TestAgent): Promise<void> {
  for (let i = 0; i < 500 && agent.origin.fetching(agent.record.id); i++) await sleep(10)
}

function setup (truth: Uint8Array, served: Uint8Array, forged: Partial<ImageRecord> = {}) {
  const [agent] = agentsOf(1, upstreamOf(truth, served), { forged })
  return agent
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
    const agent = setup(data, bad)
    const { origin, record, added, chunks } = agent
    const got = await collect(origin.read(record, 0, data.byteLength - 1))
    await settled(agent)
    expect(got.error?.name).toBe('ChunkUnavailableError')
    expect(got.data.byteLength).toBeLessThan(data.byteLength)
    expect(added).toEqual([])
    expect(chunks.kept.size).toBe(0)
    expect(chunks.collected.length).toBeGreaterThan(0)
  })

  it('checks the whole against the upstream\'s md5 when it publishes no sha512 (an image older than os_hash_value)', async () => {
    const data = randomBytes(10 * CHUNK + 7)
    const bad = Buffer.from(data)
    bad[3 * CHUNK] ^= 1
    const [good, lied] = [data, bad].map(served => {
      const upstream = upstreamOf(data, served)
      Object.assign(upstream.image, { os_hash_algo: null, os_hash_value: null })
      return agentsOf(1, upstream)[0]
    })
    const fine = await collect(good.origin.read(good.record, 0, data.byteLength - 1))
    expect(fine.data.equals(data)).toBe(true)
    expect(good.added[0].manifest).toMatchObject({ size: data.byteLength, ...digests(data) })
    const refused = await collect(lied.origin.read(lied.record, 0, data.byteLength - 1))
    await settled(lied)
    expect(refused.error?.name).toBe('ChunkUnavailableError')
    expect(refused.data.byteLength).toBeLessThan(data.byteLength)
    expect(lied.added).toEqual([])
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

  it('splits the first fetch among agents reading at once: each piece comes from the upstream once, by one of them, and every reader gets the image byte-exact', async () => {
    const data = randomBytes(5 * PIECE + 12345)
    const upstream = upstreamOf(data, data, 2)
    const agents = agentsOf(4, upstream)
    const reads = await Promise.all(agents.map(async a => await collect(a.origin.read(a.record, 0, data.byteLength - 1))))
    for (const got of reads) {
      expect(got.error).toBeUndefined()
      expect(got.data.equals(data)).toBe(true)
    }
    // Each byte once from the upstream, in distinct chunk-aligned Range requests by more than one agent.
    expect(upstream.sent()).toBe(data.byteLength)
    expect(new Set(upstream.ranges.map(([start]) => start)).size).toBe(upstream.ranges.length)
    for (const [start] of upstream.ranges) expect(start % PIECE).toBe(0)
    expect(agents.filter(a => a.received() > 0).length).toBeGreaterThan(1)
    expect(agents.reduce((n, a) => n + a.received(), 0)).toBe(data.byteLength)
    for (const a of agents) {
      expect(a.added).toHaveLength(1)
      expect(a.added[0].manifest).toMatchObject({ size: data.byteLength, ...digests(data) })
      expect(a.liars).toEqual([])
    }
  })

  it('stops asking a board that answers wait for ever once one piece waited past its lease: the readers then share the rest through the next board', async () => {
    const data = randomBytes(12 * PIECE)
    const upstream = upstreamOf(data, data)
    const agents = agentsOf(3, upstream, { stallingBoard: true, waitMs: 500 })
    const readers = agents.filter(a => a.id !== rank(upstream.image.id, agents.map(b => b.id))[0])
    const reads = await Promise.all(readers.map(async a => await collect(a.origin.read(a.record, 0, data.byteLength - 1))))
    for (const got of reads) {
      expect(got.error).toBeUndefined()
      expect(got.data.equals(data)).toBe(true)
    }
    // Asking the staller for every piece, each reader fetched every piece alone (24 pieces from the
    // upstream); now only those it waited for before giving up on that board, and the rest once.
    expect(upstream.sent()).toBeLessThanOrEqual(data.byteLength * 1.5)
  })

  it('finds a peer that sent other bytes when the whole fails its check: the peers\' pieces are fetched again from the upstream, only the liar is blamed, and readers that had its bytes are cut', async () => {
    const data = randomBytes(6 * PIECE)
    const upstream = upstreamOf(data, data, 5)
    const agents = agentsOf(4, upstream, { liar: 0 })
    // The liar starts first, so it is leased pieces the others then read from it.
    const liarRead = collect(agents[0].origin.read(agents[0].record, 0, data.byteLength - 1))
    while (agents[0].received() === 0) await sleep(1)
    const reads = await Promise.all(agents.slice(1).map(async a => await collect(a.origin.read(a.record, 0, data.byteLength - 1))))
    expect((await liarRead).data.equals(data)).toBe(true)
    for (const [i, got] of reads.entries()) {
      const agent = agents[i + 1]
      // Cut before its last bytes, never whole and wrong.
      expect(got.error?.message).toMatch(/not the upstream's/)
      expect(got.data.byteLength).toBeLessThan(data.byteLength)
      expect(agent.liars.length).toBeGreaterThan(0)
      expect(new Set(agent.liars)).toEqual(new Set(['agent-0']))
      // What it recorded is the upstream's image.
      expect(agent.added).toHaveLength(1)
      expect(agent.added[0].manifest).toMatchObject({ size: data.byteLength, ...digests(data) })
      // The lie's chunks were dropped.
      await settled(agent)
      const named = new Set(agent.added[0].manifest.cids)
      expect([...agent.chunks.kept.keys()].filter(cid => !named.has(cid))).toEqual([])
    }
    // The upstream sent the pieces peers had sent once more to each agent, no more.
    expect(upstream.sent()).toBeLessThanOrEqual(data.byteLength * 4)
  })
})

describe('PieceBoard', () => {
  const SIZE = 5 * PIECE
  const board = (now = (): number => 0): PieceBoard => new PieceBoard(id => id === 'img' ? SIZE : undefined, CHUNK, { now })

  it('leases each piece to one agent, lowest first, and names the lessee holder only when the lessee says it is done', async () => {
    const b = board()
    expect(await b.ask('a', { op: 'lease', image: 'img', pieceSize: PIECE })).toEqual({ fetch: 0 })
    expect(await b.ask('b', { op: 'lease', image: 'img', pieceSize: PIECE })).toEqual({ fetch: 1 })
    expect(await b.ask('c', { op: 'done', image: 'img', piece: 0, pieceSize: PIECE })).toMatchObject({ refused: expect.any(String) })
    const waiting = b.ask('b', { op: 'want', image: 'img', piece: 0, pieceSize: PIECE })
    expect(await b.ask('a', { op: 'done', image: 'img', piece: 0, pieceSize: PIECE })).toEqual({ holder: 'a' })
    expect(await waiting).toEqual({ holder: 'a' })
    // A piece nobody leased goes to who wants it.
    expect(await b.ask('c', { op: 'want', image: 'img', piece: 4, pieceSize: PIECE })).toEqual({ fetch: 4 })
    for (const p of [2, 3]) expect(await b.ask('d', { op: 'lease', image: 'img', pieceSize: PIECE })).toEqual({ fetch: p })
    expect(await b.ask('d', { op: 'lease', image: 'img', pieceSize: PIECE })).toEqual({ none: true })
  })

  it('gives an expired lease to the next agent', async () => {
    let now = 0
    const b = board(() => now)
    expect(await b.ask('a', { op: 'lease', image: 'img', pieceSize: PIECE })).toEqual({ fetch: 0 })
    now += 60_000
    expect(await b.ask('b', { op: 'want', image: 'img', piece: 0, pieceSize: PIECE })).toEqual({ fetch: 0 })
  })

  it('refuses images that are not upstream images here, other piece sizes, and pieces that do not exist', async () => {
    const b = board()
    expect(await b.ask('a', { op: 'lease', image: 'other', pieceSize: PIECE })).toMatchObject({ refused: expect.any(String) })
    // A peer cannot set up the board with pieces the others do not cut.
    expect(await b.ask('x', { op: 'lease', image: 'img', pieceSize: PIECE / 2 })).toMatchObject({ refused: expect.any(String) })
    expect(await b.ask('a', { op: 'lease', image: 'img', pieceSize: PIECE })).toEqual({ fetch: 0 })
    expect(await b.ask('a', { op: 'lease', image: 'img', pieceSize: PIECE * 2 })).toMatchObject({ refused: expect.any(String) })
    expect(await b.ask('a', { op: 'want', image: 'img', piece: 5, pieceSize: PIECE })).toMatchObject({ refused: expect.any(String) })
    expect(parseBoardRequest({ op: 'want', image: 'img', piece: -1, pieceSize: PIECE })).toBeUndefined()
    expect(parseBoardRequest({ op: 'lease', image: 'img', pieceSize: PIECE })).toEqual({ op: 'lease', image: 'img', pieceSize: PIECE })
  })
})
