import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FsChunkStore } from '@peerglance/chunk-store'
import type { ChunkBlocks, Manifest } from '@peerglance/interface'
import { createMesh } from '../src/index.ts'
import type { Mesh } from '../src/index.ts'
import type { MeshInit } from '../src/index.ts'

export const KiB = 1024
export const MiB = 1024 * KiB

export interface TestAgent {
  dir: string
  store: FsChunkStore
  mesh: Mesh
  manifests: Map<string, Uint8Array>
  /** What the mesh reads and writes chunks through (the store, or a wrapper around it). */
  blocks: ChunkBlocks
}

/** Every agent made here, stopped and deleted by `cleanup()` (call it in afterEach). */
const agents: TestAgent[] = []

export interface AgentOptions {
  chunkSize?: number
  bootstrap?: string[]
  init?: MeshInit
  /** Wraps the store before the mesh sees it (to corrupt or count reads). */
  wrap?: (store: FsChunkStore) => ChunkBlocks
  /** Give the mesh the store's range reader for complete images, as the agent does (default true). */
  local?: boolean
  dir?: string
  /** The store's buffers for chunks from peers (FsChunkStoreInit.receiveSlots). */
  receiveSlots?: number
  /** The store's buffers for chunk files it serves (FsChunkStoreInit.readSlots). */
  readSlots?: number
}

/** Quick settings so failure paths end within a test's time. */
export const FAST: MeshInit = {
  unavailableTimeoutMs: 1_500,
  requestTimeoutMs: 3_000,
  urgentFallbackMs: 500,
  backgroundFallbackMs: 2_000,
  startGraceMs: 50,
  redialMinMs: 50,
  redialMaxMs: 500
}

export async function startAgent (opts: AgentOptions = {}): Promise<TestAgent> {
  const dir = opts.dir ?? await mkdtemp(join(tmpdir(), 'peerglance-mesh-'))
  const store = new FsChunkStore({ dir: join(dir, 'chunks'), chunkSize: opts.chunkSize ?? 64 * KiB, receiveSlots: opts.receiveSlots, readSlots: opts.readSlots })
  await store.start()
  const manifests = new Map<string, Uint8Array>()
  const blocks = opts.wrap?.(store) ?? store
  const mesh = await createMesh({
    chunks: blocks,
    local: opts.local === false ? undefined : store,
    getManifestBytes: async id => manifests.get(id)
  }, { dataDir: dir, bootstrap: opts.bootstrap, ...FAST, ...opts.init })
  await mesh.start()
  const agent = { dir, store, mesh, manifests, blocks }
  agents.push(agent)
  return agent
}

export async function stopAgent (agent: TestAgent): Promise<void> {
  await agent.mesh.stop()
  await agent.store.stop()
}

export async function cleanup (): Promise<void> {
  const all = agents.splice(0)
  await Promise.all(all.map(async a => { await stopAgent(a) }))
  await Promise.all(all.map(async a => { await rm(a.dir, { recursive: true, force: true }) }))
}

/** Stores random bytes as an image on the agent; returns the bytes and manifest. */
export async function seedImage (agent: TestAgent, size: number, imageId = 'img-' + randomBytes(4).toString('hex')): Promise<{ imageId: string, bytes: Buffer, manifest: Manifest }> {
  const bytes = randomBytes(size)
  const result = await agent.store.ingest(pieces(bytes), { maxBytes: size })
  agent.store.release(result.cids)
  const manifest: Manifest = { size: result.size, chunkSize: result.chunkSize, cids: result.cids, md5: result.md5, sha512: result.sha512, staged: false }
  agent.manifests.set(imageId, new TextEncoder().encode(JSON.stringify(manifest)))
  return { imageId, bytes, manifest }
}

async function * pieces (bytes: Uint8Array, size = 256 * KiB): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size)
}

export async function readAll (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  // Copied: a reader may reuse a yielded buffer for the chunk after next (ImageReader contract).
  for await (const part of source) parts.push(Buffer.from(part))
  return Buffer.concat(parts)
}

export function sha512 (bytes: Uint8Array): string {
  return createHash('sha512').update(bytes).digest('hex')
}

/** Waits until `check` holds, polling; fails after `ms`. */
export async function until (check: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/** Waits until every agent is connected to every other. */
export async function fullyConnected (list: TestAgent[], ms = 10_000): Promise<void> {
  await until(() => list.every(a => list.every(b => a === b || a.mesh.connectedPeers().includes(b.mesh.peerId))), ms, 'a full mesh')
}
