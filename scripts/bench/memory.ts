// (d) The agent's peak RSS while it receives and then serves a 4 GiB image, and that of a second
// agent fetching it from the first (BENCH_FETCH=1, the default). Target: < 150 MB while serving
// or fetching. Last, the agent is restarted and serves the image once more (BENCH_RESTART=1, the
// default): serving apart from what the uploads left in the process. Then the fetcher and the
// restarted agent are read at rest, 25 s after their last transfer. The peak is VmHWM from
// /proc/<pid>/status, reset (clear_refs 5) before each phase; VmRSS is also sampled every 100 ms.
// Baselines measured in the same run: an idle agent, and bare Node processes (plain JS, and a .ts
// file loaded through Node's type stripping).
//
//   node scripts/bench/memory.ts
//   BENCH_SIZE_MIB=4096 BENCH_REPS=3 BENCH_CLIENTS=1,8 node scripts/bench/memory.ts
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddrOf, randomFile, waitConnected } from '@peerglance/testing'
import {
  LoadProbe, countChunkFiles, createImage, curl, deleteImage, envInt, envList, fitSize, fmt, getImage, log, mdTable, median,
  MiB, printHeader, processCpu, processMemory, resetPeakRss, runBench, sampleRss, startAgent, workDir
} from './lib.ts'
import type { BenchAgent, Cleanup, CurlResult, Load } from './lib.ts'

const TARGET_MB = 150
/** How long after its last transfer an agent's RSS is read "at rest". */
const REST_MS = 25_000
const MB = 1e6

interface Phase {
  phase: string
  rep: number
  /** VmHWM after the phase, KiB (peak since the reset before it). */
  hwmKiB: number
  /** Highest VmRSS sampled every 100 ms, KiB. */
  sampledMaxKiB: number
  sampledMedianKiB: number
  /** Highest RssAnon sampled: private memory, without the node binary's shared file pages. */
  sampledAnonMaxKiB: number
  /** VmRSS just before the phase, KiB. */
  startKiB: number
  mibps: number
  cpuPct: number
  load: Load
}

/** Peak RSS of a Node process that loads `file` and waits a second: what the runtime alone costs. */
async function nodeFloor (cleanup: Cleanup, file: string): Promise<number> {
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] })
  cleanup.add(() => { if (child.exitCode == null) child.kill('SIGKILL') })
  const hwm = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', () => { try { resolve(processMemory(child.pid as number).hwmKiB) } catch (err) { reject(err as Error) } })
    child.once('exit', code => { reject(new Error(`floor process exited with ${code}`)) })
  })
  child.kill('SIGTERM')
  return hwm
}

await runBench(async cleanup => {
  const reps = envInt('BENCH_REPS', 3)
  const clientCounts = envList('BENCH_CLIENTS', [1, 8])
  const sizeMiB = await fitSize(envInt('BENCH_SIZE_MIB', 4096), 2)
  const size = sizeMiB * MiB
  printHeader(`Memory: agent peak RSS receiving and serving a ${sizeMiB} MiB image`, { BENCH_SIZE_MIB: sizeMiB, BENCH_REPS: reps, BENCH_CLIENTS: clientCounts.join(',') })

  const dir = await workDir(cleanup, 'memory')
  const file = join(dir, 'image.raw')
  log(`writing ${sizeMiB} MiB of random data to ${file}`)
  await randomFile(file, size)

  // Runtime floors: a plain JS process, and one whose entry is TypeScript (as the agent's is).
  const floorJs = join(dir, 'floor.mjs')
  const floorTs = join(dir, 'floor.ts')
  const body = 'setTimeout(() => {}, 60_000); setTimeout(() => { process.stdout.write("ready\\n") }, 1000)\n'
  await writeFile(floorJs, body)
  await writeFile(floorTs, `const wait: number = 60_000\n${body.replace('60_000', 'wait')}`)
  const floorJsKiB = await nodeFloor(cleanup, floorJs)
  const floorTsKiB = await nodeFloor(cleanup, floorTs)

  const dataDir = join(dir, 'agent')
  const agent: BenchAgent = await startAgent(cleanup, dataDir)
  await new Promise(resolve => setTimeout(resolve, 1000))
  const idle = processMemory(agent.pid)

  const canReset = await resetPeakRss(agent.pid)
  if (!canReset) log('cannot reset VmHWM (clear_refs not permitted): peaks are since agent start')

  // A second agent that fetches the image from the first over the mesh.
  const fetcherDir = join(dir, 'fetcher')
  const fetcher: BenchAgent | undefined = envInt('BENCH_FETCH', 1) === 1 ? await startAgent(cleanup, fetcherDir, ['--bootstrap', multiaddrOf(agent.agent)]) : undefined
  if (fetcher != null) await waitConnected([agent.agent, fetcher.agent], 60_000)
  const fetcherIdle = fetcher == null ? undefined : processMemory(fetcher.pid)

  const measure = async (phase: string, rep: number, work: () => Promise<CurlResult[]>, pid = agent.pid): Promise<{ phase: Phase, results: CurlResult[] }> => {
    if (canReset) await resetPeakRss(pid)
    const startKiB = processMemory(pid).rssKiB
    const sampler = sampleRss(pid, 100)
    const cpu0 = processCpu(pid)
    const probe = new LoadProbe()
    const t0 = performance.now()
    const results = await work()
    const sec = (performance.now() - t0) / 1000
    const samples = sampler.stop()
    const cpu = processCpu(pid) - cpu0
    const load = probe.end(cpu + results.reduce((a, r) => a + r.cpuSec, 0))
    const bytes = results.reduce((a, r) => a + Math.max(r.sizeDownload, r.sizeUpload), 0)
    const p: Phase = {
      phase,
      rep,
      hwmKiB: processMemory(pid).hwmKiB,
      sampledMaxKiB: Math.max(...samples.rss),
      sampledMedianKiB: median(samples.rss),
      sampledAnonMaxKiB: Math.max(...samples.anon),
      startKiB,
      mibps: bytes / MiB / sec,
      cpuPct: 100 * cpu / sec,
      load
    }
    log(`rep ${rep} ${phase}: peak ${fmt(p.hwmKiB / 1024)} MiB (sampled max ${fmt(p.sampledMaxKiB / 1024)}, median ${fmt(p.sampledMedianKiB / 1024)}, anon max ${fmt(p.sampledAnonMaxKiB / 1024)}, start ${fmt(startKiB / 1024)}), ${fmt(p.mibps)} MiB/s, agent CPU ${fmt(p.cpuPct)} %, others ${fmt(load.othersPct)} %, load ${load.load1.toFixed(2)}`)
    return { phase: p, results }
  }

  const phases: Phase[] = []
  /** When the fetcher's last fetch ended (performance.now()). */
  let fetchedAt = 0
  let id = ''
  for (let rep = 0; rep < reps; rep++) {
    // Upload: a fresh image each rep; the previous one is deleted, so every chunk is written again.
    if (id !== '') {
      await deleteImage(agent.url, id)
      const left = await countChunkFiles(dataDir)
      if (left !== 0) throw new Error(`${left} chunk files left after deleting the image`)
    }
    id = (await createImage(agent.url, { name: `bench-memory-${rep}` })).id
    const imageUrl = `${agent.url}/v2/images/${id}/file`
    const up = await measure('upload, 1 × curl -T (Content-Length)', rep, async () => [await curl(['-T', file, '-H', 'content-type: application/octet-stream', '-o', '/dev/null', imageUrl])])
    if (up.results[0].httpCode !== 204) throw new Error(`upload answered ${up.results[0].httpCode}`)
    const image = await getImage(agent.url, id)
    if (image.status !== 'active' || image.size !== size) throw new Error(`image is ${String(image.status)}, ${String(image.size)} bytes`)
    phases.push(up.phase)
    for (const clients of clientCounts) {
      const down = await measure(`download, ${clients} × curl`, rep, async () => await Promise.all(Array.from({ length: clients }, async () => await curl(['-o', '/dev/null', imageUrl]))))
      for (const r of down.results) if (r.httpCode !== 200 || r.sizeDownload !== size) throw new Error(`download: ${r.httpCode}, ${r.sizeDownload} bytes`)
      phases.push(down.phase)
    }
    if (fetcher != null) {
      // The image's record reaches the fetcher by gossip; its chunks must all come from the peer.
      await waitUntil(async () => (await fetch(`${fetcher.url}/v2/images/${id}`).then(async r => { await r.arrayBuffer(); return r.status })) === 200, 'the image reaching the fetcher')
      await waitUntil(async () => await countChunkFiles(fetcherDir) === 0, 'the fetcher dropping the last rep\'s chunks')
      const got = await measure('fetch from the other agent, 1 × curl on the fetcher', rep, async () => [await curl(['-o', '/dev/null', `${fetcher.url}/v2/images/${id}/file`])], fetcher.pid)
      if (got.results[0].httpCode !== 200 || got.results[0].sizeDownload !== size) throw new Error(`fetch: ${got.results[0].httpCode}, ${got.results[0].sizeDownload} bytes`)
      phases.push(got.phase)
      fetchedAt = performance.now()
    }
  }

  // At rest after moving data, as an agent spends most of its life: what the transfers left once
  // the agent has been idle for REST_MS (its idle collection comes after 10 s).
  const atRest: Array<{ name: string, memory: ReturnType<typeof processMemory> }> = []
  const rest = async (name: string, pid: number, since: number): Promise<void> => {
    await new Promise(resolve => setTimeout(resolve, Math.max(0, since + REST_MS - performance.now())))
    atRest.push({ name, memory: processMemory(pid) })
  }
  // Serving apart from what uploading left in the process: the agent restarted on the same data.
  let served: BenchAgent | undefined
  let servedAt = 0
  if (envInt('BENCH_RESTART', 1) === 1 && id !== '') {
    await agent.stop()
    const restarted = served = await startAgent(cleanup, dataDir)
    await new Promise(resolve => setTimeout(resolve, 1000))
    const download = await measure('download after a restart, 1 × curl', reps - 1, async () => [await curl(['-o', '/dev/null', `${restarted.url}/v2/images/${id}/file`])], restarted.pid)
    if (download.results[0].httpCode !== 200 || download.results[0].sizeDownload !== size) throw new Error(`download after a restart: ${download.results[0].httpCode}, ${download.results[0].sizeDownload} bytes`)
    phases.push(download.phase)
    servedAt = performance.now()
  }
  if (fetcher != null && fetchedAt > 0) await rest(`fetcher at rest, ${REST_MS / 1000} s after its fetch`, fetcher.pid, fetchedAt)
  if (served != null) await rest(`agent at rest, ${REST_MS / 1000} s after serving (restarted)`, served.pid, servedAt)

  const mb = (kib: number): string => fmt(kib * 1024 / MB)
  const rows: string[][] = [
    ['node, plain JS file (floor)', mb(floorJsKiB), '', '', '', '', '', '', '', ''],
    ['node, .ts file via type stripping (floor)', mb(floorTsKiB), '', '', '', '', '', '', '', ''],
    ['agent idle, after start (baseline)', mb(idle.hwmKiB), `RSS now ${mb(idle.rssKiB)}`, '1.00', fmt(idle.hwmKiB * 1024 / MB / TARGET_MB, 2), mb(idle.rssKiB), '', mb(idle.anonKiB), '', ''],
    ...fetcherIdle == null ? [] : [['fetcher idle, connected', mb(fetcherIdle.hwmKiB), `RSS now ${mb(fetcherIdle.rssKiB)}`, fmt(fetcherIdle.hwmKiB / idle.hwmKiB, 2), fmt(fetcherIdle.hwmKiB * 1024 / MB / TARGET_MB, 2), mb(fetcherIdle.rssKiB), '', mb(fetcherIdle.anonKiB), '', '']]
  ]
  for (const { name, memory } of atRest) rows.push([name, '', `RSS now ${mb(memory.rssKiB)}`, fmt(memory.rssKiB / idle.hwmKiB, 2), fmt(memory.rssKiB * 1024 / MB / TARGET_MB, 2), '', '', mb(memory.anonKiB), '', ''])
  const verdicts: string[] = []
  for (const name of [...new Set(phases.map(p => p.phase))]) {
    const ps = phases.filter(p => p.phase === name)
    const peak = median(ps.map(p => p.hwmKiB))
    rows.push([
      name, mb(peak), ps.map(p => mb(p.hwmKiB)).join(', '), fmt(peak / idle.hwmKiB, 2), fmt(peak * 1024 / MB / TARGET_MB, 2),
      ps.map(p => mb(p.startKiB)).join(', '),
      `${mb(median(ps.map(p => p.sampledMaxKiB)))} / ${mb(median(ps.map(p => p.sampledMedianKiB)))}`,
      mb(median(ps.map(p => p.sampledAnonMaxKiB))),
      fmt(median(ps.map(p => p.mibps))), `${ps.map(p => fmt(p.load.othersPct)).join(', ')} / ${ps.map(p => p.load.load1.toFixed(1)).join(', ')}`
    ])
    const worst = Math.max(...ps.map(p => p.hwmKiB)) * 1024 / MB
    verdicts.push(`- ${name}: peak ${fmt(worst)} MB (worst of ${ps.length}) against the < ${TARGET_MB} MB target: ${worst < TARGET_MB ? 'met' : `missed by ${fmt(worst - TARGET_MB)} MB (${fmt(100 * (worst - TARGET_MB) / TARGET_MB)} %)`}`)
  }
  console.log(mdTable(['process / phase', 'peak RSS MB (median VmHWM)', 'all runs MB', 'ratio vs idle agent', 'ratio vs 150 MB target', 'RSS before the phase MB', 'sampled VmRSS max / median MB', 'sampled RssAnon max MB (private)', 'MiB/s', 'others\' CPU % / load avg per run'], rows))
  console.log(`\n${verdicts.join('\n')}\n`)
  console.log(`MB = 10^6 bytes (RSS in MiB = MB / 1.049). VmHWM ${canReset ? 'was reset (clear_refs 5) before each phase' : 'could not be reset: each peak is since agent start'}. The idle agent has not started its hash workers yet; they start with the first upload and stay. RSS includes ~${mb(idle.fileKiB)} MB of file-backed pages (mostly the node binary, shared and reclaimable); RssAnon is the private part.\n`)
})

/** Polls `ok` every 200 ms for up to 60 s. */
async function waitUntil (ok: () => Promise<boolean>, what: string): Promise<void> {
  for (const until = Date.now() + 60_000; Date.now() < until; await new Promise(resolve => setTimeout(resolve, 200))) {
    if (await ok()) return
  }
  throw new Error(`timed out waiting for ${what}`)
}
