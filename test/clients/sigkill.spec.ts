import { createHash, randomBytes } from 'node:crypto'
import { readFile, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, describe, expect, it } from 'vitest'
import { CHUNKS_DIR, DEFAULT_CHUNK_SIZE, STAGING_DIR } from '@peerglance/chunk-store'
import { cidOf } from '@peerglance/interface'
import { spawnAgent, tmpDir } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'
import { glanceApi } from './cli.ts'

const MIB = 1024 * 1024
/** What the interrupted upload would send in all; it never gets there. */
const UPLOAD_SIZE = 300 * MIB
/** The client stops sending after this much and waits for the kill, so the crash lands mid-upload every time. */
const STALL_AT = 64 * MIB
/** Chunk files the agent must have written for the interrupted upload before it is killed. */
const CHUNKS_BEFORE_KILL = 32

// The agent keeps its chunk store in <data-dir>/chunks (packages/agent/src/create-agent.ts).
function chunkStoreDir (dataDir: string): string {
  return join(dataDir, 'chunks')
}

/** Every chunk file as [name, path]: chunks/<fan-out>/<cid>. */
async function chunkFiles (dataDir: string): Promise<Array<[string, string]>> {
  const root = join(chunkStoreDir(dataDir), CHUNKS_DIR)
  const entries = await readdir(root, { recursive: true, withFileTypes: true })
  return entries.filter(e => e.isFile()).map(e => [e.name, join(e.parentPath, e.name)])
}

async function stagingEntries (dataDir: string): Promise<string[]> {
  return await readdir(join(chunkStoreDir(dataDir), STAGING_DIR))
}

/** Each chunk's name must be the CIDv1 (raw, sha2-256) of its bytes: no half-written chunk under a real name. */
async function expectChunksMatchTheirNames (dataDir: string): Promise<void> {
  for (const [name, path] of await chunkFiles(dataDir)) {
    expect(cidOf(await readFile(path)), path).toBe(name)
  }
}

function sha512 (bytes: Uint8Array): string {
  return createHash('sha512').update(bytes).digest('hex')
}

/**
 * Starts `PUT /file` with a body of random bytes that pauses after STALL_AT; resolves once the agent
 * is `saving` the image and has written CHUNKS_BEFORE_KILL more chunk files than `chunksBefore`.
 */
async function uploadUntilStalled (url: string, dataDir: string, id: string, chunksBefore: number): Promise<{ settled: Promise<unknown>, sent: () => number }> {
  const api = glanceApi(url)
  let sent = 0
  const body = new ReadableStream<Uint8Array>({
    async pull (controller) {
      if (sent >= STALL_AT) {
        // Never resolves by itself: the agent dies while the client still has data to send.
        await new Promise(() => {})
        return
      }
      const piece = randomBytes(Math.min(MIB, UPLOAD_SIZE - sent))
      sent += piece.length
      controller.enqueue(piece)
    }
  }, { highWaterMark: 0 })
  // The connection dies with the agent, so this settles with a network error, not a status.
  const settled = api.fetch(`/v2/images/${id}/file`, {
    method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body, duplex: 'half'
  } as RequestInit).then(res => res.status, (err: unknown) => err)

  const deadline = Date.now() + 60_000
  for (;;) {
    const status = (await api.image(id)).status
    const chunks = (await chunkFiles(dataDir)).length - chunksBefore
    if (status === 'saving' && chunks >= CHUNKS_BEFORE_KILL && sent >= STALL_AT / 2) break
    if (Date.now() > deadline) throw new Error(`upload did not get going: status ${status}, ${chunks} chunks, ${sent} bytes sent`)
    await sleep(50)
  }
  return { settled, sent: () => sent }
}

describe('an agent killed with SIGKILL in the middle of an upload', () => {
  const dirs: string[] = []
  const agents: SpawnedAgent[] = []

  async function start (dataDir: string): Promise<SpawnedAgent> {
    const agent = await spawnAgent({ dataDir })
    agents.push(agent)
    return agent
  }

  afterAll(async () => {
    // Whatever a failed test left running; kill() on an exited agent just returns its exit code.
    for (const agent of agents) await agent.kill('SIGKILL')
    for (const dir of dirs) await rm(dir, { recursive: true, force: true })
  })

  it('comes back with the image queued, no data and no chunk left, and takes a fresh upload', async () => {
    const dir = await tmpDir('peerglance-sigkill-')
    dirs.push(dir)
    const dataDir = join(dir, 'data')
    const first = await start(dataDir)
    const image = await glanceApi(first.url).create({ name: 'interrupted', disk_format: 'raw', container_format: 'bare' })

    const upload = await uploadUntilStalled(first.url, dataDir, image.id, 0)
    expect(await first.kill('SIGKILL')).toBeNull()
    expect(first.process.signalCode).toBe('SIGKILL')
    expect(await upload.settled).toBeInstanceOf(Error)
    expect(upload.sent()).toBeLessThan(UPLOAD_SIZE)
    // A chunk appears under its name only when whole, even when the process dies mid-write.
    expect((await chunkFiles(dataDir)).length).toBeGreaterThanOrEqual(CHUNKS_BEFORE_KILL)
    await expectChunksMatchTheirNames(dataDir)

    const second = await start(dataDir)
    const api = glanceApi(second.url)
    // What Glance's _restore does to a failed upload: back to queued with no size or hashes.
    expect(await api.image(image.id)).toMatchObject({
      status: 'queued', size: null, virtual_size: null, checksum: null, os_hash_algo: null, os_hash_value: null
    })
    const noData = await api.fetch(`/v2/images/${image.id}/file`)
    expect(noData.status).toBe(204)
    expect(await noData.text()).toBe('')
    // Start-up sweeps staging and collects every chunk no image refers to.
    expect(await stagingEntries(dataDir)).toEqual([])
    expect(await chunkFiles(dataDir)).toEqual([])

    const data = randomBytes(2 * MIB + 5)
    await api.upload(image.id, data)
    expect(await api.image(image.id)).toMatchObject({ status: 'active', size: data.length, os_hash_value: sha512(data) })
    const read = await api.fetch(`/v2/images/${image.id}/file`)
    expect(read.status).toBe(200)
    expect(Buffer.compare(Buffer.from(await read.arrayBuffer()), data)).toBe(0)
    // The spawned agent runs with the default chunk size.
    expect((await chunkFiles(dataDir)).length).toBe(Math.ceil(data.length / DEFAULT_CHUNK_SIZE))
    await expectChunksMatchTheirNames(dataDir)

    expect(await second.kill('SIGTERM')).toBe(0)
  })

  it('keeps an image uploaded before the crash active, byte-exact and with all its chunks', async () => {
    const dir = await tmpDir('peerglance-sigkill-')
    dirs.push(dir)
    const dataDir = join(dir, 'data')
    const first = await start(dataDir)
    const before = glanceApi(first.url)

    const kept = await before.create({ name: 'kept', disk_format: 'raw', container_format: 'bare' })
    const data = randomBytes(8 * MIB + 123)
    await before.upload(kept.id, data)
    const keptImage = await before.image(kept.id)
    expect(keptImage).toMatchObject({ status: 'active', size: data.length, os_hash_value: sha512(data) })
    const keptChunks = (await chunkFiles(dataDir)).map(([name]) => name).sort()
    expect(keptChunks.length).toBeGreaterThan(0)

    const lost = await before.create({ name: 'interrupted', disk_format: 'raw', container_format: 'bare' })
    const upload = await uploadUntilStalled(first.url, dataDir, lost.id, keptChunks.length)
    expect(await first.kill('SIGKILL')).toBeNull()
    expect(await upload.settled).toBeInstanceOf(Error)

    const second = await start(dataDir)
    const api = glanceApi(second.url)
    expect(await api.image(kept.id)).toEqual(keptImage)
    expect(await api.image(lost.id)).toMatchObject({ status: 'queued', size: null, checksum: null })
    expect(await stagingEntries(dataDir)).toEqual([])
    // The sweep took the interrupted upload's chunks and nothing else.
    expect((await chunkFiles(dataDir)).map(([name]) => name).sort()).toEqual(keptChunks)
    await expectChunksMatchTheirNames(dataDir)

    const read = await api.fetch(`/v2/images/${kept.id}/file`)
    expect(read.status).toBe(200)
    expect(read.headers.get('content-md5')).toBe(keptImage.checksum)
    expect(sha512(new Uint8Array(await read.arrayBuffer()))).toBe(sha512(data))

    expect(await second.kill('SIGTERM')).toBe(0)
  })
})
