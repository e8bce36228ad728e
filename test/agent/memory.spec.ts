import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import { rm } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnAgent, tmpDir, waitFor } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'

const MiB = 1024 * 1024
/** Large enough that a buffer growing with the image would show far above the bound. */
const IMAGE = 1024 * MiB
/** What streaming an image may add to the agent's RSS: a quarter of it, whatever the image. */
const GROWTH_BOUND = IMAGE / 4

/** utime + stime of the whole process, in seconds (clock ticks of 1/100 s). */
function cpuOf (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** Times the main thread went to sleep waiting (each one a wake-up later). */
function wakeupsOf (pid: number): number {
  return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))?.[1])
}

/** Private memory (heap, buffers): RSS without the node binary's file pages. */
function anonOf (pid: number): number {
  return Number(/^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024
}

function rssOf (pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024
}

/** Highest RSS seen every 50 ms while `work` runs. */
async function peakRssDuring (pid: number, work: () => Promise<void>): Promise<number> {
  let peak = rssOf(pid)
  const timer = setInterval(() => { peak = Math.max(peak, rssOf(pid)) }, 50)
  try {
    await work()
  } finally {
    clearInterval(timer)
  }
  return Math.max(peak, rssOf(pid))
}

/** Full collections (mark-compacts) the agent ran so far, from its GC metrics. */
async function majorGcsOf (agent: SpawnedAgent): Promise<number> {
  const text = await (await fetch(`${agent.url}/metrics`)).text()
  if (!text.includes('peerglance_nodejs_gc_duration_seconds')) throw new Error('no GC metrics in /metrics')
  // No series for a kind until one ran.
  return Number(/^peerglance_nodejs_gc_duration_seconds_count\{kind="major"\} (\d+)$/m.exec(text)?.[1] ?? 0)
}

/** `size` bytes, no two chunks alike (so every chunk is written), made as they are sent. */
async function * imageBytes (size: number, sha512: ReturnType<typeof createHash>): AsyncGenerator<Uint8Array> {
  const block = randomBytes(MiB)
  for (let sent = 0, n = 0; sent < size; sent += MiB, n++) {
    const piece = Buffer.from(block.subarray(0, Math.min(MiB, size - sent)))
    piece.writeUInt32BE(n, 0)
    sha512.update(piece)
    yield piece
  }
}

describe('the agent\'s memory while it streams a large image', () => {
  let dir: string
  let agent: SpawnedAgent

  beforeAll(async () => {
    dir = await tmpDir()
    agent = await spawnAgent({ dataDir: dir })
  })

  afterAll(async () => {
    await agent?.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  })

  it('runs with the launcher\'s memory settings', () => {
    const cmdline = readFileSync(`/proc/${agent.process.pid}/cmdline`, 'utf8').split('\0')
    expect(cmdline).toContain('--max-semi-space-size=2')
    expect(cmdline).toContain('--initial-old-space-size=64')
    expect(readFileSync(`/proc/${agent.process.pid}/environ`, 'utf8').split('\0')).toContain(`MALLOC_MMAP_THRESHOLD_=${128 * 1024}`)
  })

  it('stays flat receiving and serving 1 GiB: RSS grows by less than a quarter of the image, and no full collection runs while serving', async () => {
    const pid = agent.process.pid as number
    const created = await fetch(`${agent.url}/v2/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ disk_format: 'raw', container_format: 'bare' }) })
    expect(created.status).toBe(201)
    const { id } = await created.json() as { id: string }
    const idle = rssOf(pid)

    const sent = createHash('sha512')
    const uploadPeak = await peakRssDuring(pid, async () => {
      const req = request(`${agent.url}/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': IMAGE } })
      const answered = new Promise<number>((resolve, reject) => {
        req.once('response', res => { res.resume(); resolve(res.statusCode ?? 0) })
        req.once('error', reject)
      })
      await pipeline(Readable.from(imageBytes(IMAGE, sent)), req)
      expect(await answered).toBe(204)
    })
    const image = await (await fetch(`${agent.url}/v2/images/${id}`)).json() as { status: string, size: number, os_hash_value: string }
    expect(image).toMatchObject({ status: 'active', size: IMAGE, os_hash_value: sent.digest('hex') })

    const received = createHash('sha512')
    let bytes = 0
    const majorBefore = await majorGcsOf(agent)
    const servePeak = await peakRssDuring(pid, async () => {
      const res = await fetch(`${agent.url}/v2/images/${id}/file`)
      expect(res.status).toBe(200)
      for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
        received.update(part)
        bytes += part.byteLength
      }
    })
    expect(bytes).toBe(IMAGE)
    expect(received.digest('hex')).toBe(image.os_hash_value)
    // Serving allocates nothing that lives (read slots, a scavenge's worth of garbage): with the old
    // generation's limit left just above the live heap, its first promotions started full collections.
    const majorServing = await majorGcsOf(agent) - majorBefore

    const growth = { upload: uploadPeak - idle, serve: servePeak - idle }
    console.log(`agent RSS idle ${(idle / 1e6).toFixed(0)} MB; peak while receiving ${(uploadPeak / 1e6).toFixed(0)} MB, while serving ${(servePeak / 1e6).toFixed(0)} MB; ${majorServing} full collections while serving`)
    expect(growth.upload).toBeLessThan(GROWTH_BOUND)
    expect(growth.serve).toBeLessThan(GROWTH_BOUND)
    expect(majorServing).toBe(0)
  })
})

describe('the agent at rest', () => {
  let dir: string
  let agent: SpawnedAgent

  beforeAll(async () => {
    dir = await tmpDir()
    agent = await spawnAgent({ dataDir: dir, args: ['--log-level', 'debug'] })
  })

  afterAll(async () => {
    await agent?.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  })

  it('wakes seldom, uses little CPU, and once idle gives back what start-up left', async () => {
    // Measured: ~6 wake-ups and 1-2 ms of CPU a second alone (prom-client's event-loop monitor
    // once woke it 100 times a second, for 6 ms). The bounds are far above that, for a loaded machine.
    const pid = agent.process.pid as number
    const [w0, c0, t0] = [wakeupsOf(pid), cpuOf(pid), performance.now()]
    await new Promise(resolve => setTimeout(resolve, 10_000))
    const sec = (performance.now() - t0) / 1000
    const wakeups = (wakeupsOf(pid) - w0) / sec
    const cpuMs = 1000 * (cpuOf(pid) - c0) / sec
    console.log(`idle agent: ${wakeups.toFixed(1)} wake-ups/s of its main thread, ${cpuMs.toFixed(1)} ms CPU per second`)
    expect(wakeups).toBeLessThan(50)
    expect(cpuMs).toBeLessThan(30)

    // Start-up grows V8's young generation to its cap (2 x 2 MiB) and leaves garbage; an idle
    // process never collects them. One full collection (idle-collector.ts) gives them back:
    // RssAnon falls by ~17 MB as V8 frees the pages. V8's committed heap size moves by only a few
    // MB either way with a 2 MiB cap (-3.4 and +1.0 MB in two CI runs; -15 when it was 8 MiB), so
    // what is asserted is the memory given back.
    const collected = await waitFor(() => agent.logs.find(l => l.msg === 'idle: collected the heap'), { timeoutMs: 45_000, intervalMs: 100, what: 'the idle collection' })
    const before = anonOf(pid)
    console.log(`idle agent: heap ${(Number(collected.heapBefore) / 1e6).toFixed(1)} MB before the collection, ${(Number(collected.heapAfter) / 1e6).toFixed(1)} MB after`)
    await waitFor(() => anonOf(pid) < before - 10 * MiB, { timeoutMs: 20_000, intervalMs: 250, what: 'RssAnon 10 MiB lower after the collection' })
    console.log(`idle agent: RssAnon ${(before / 1e6).toFixed(0)} MB at the collection, ${(anonOf(pid) / 1e6).toFixed(0)} MB after; RSS ${(rssOf(pid) / 1e6).toFixed(0)} MB`)
  }, 90_000)
})
