// (c) Latency of create, show and list with 10,000 images in the store, from node's fetch (undici,
// keep-alive) in this process. The floor is a trivial node:http server in a child process that
// answers every request with a fixed ~1 KB JSON body, measured in the same rounds. Show and list
// are measured twice: on the agent that created the images (its cache holds them in creation
// order), and after a restart (cache reloaded from LevelDB, in id order, as after any reboot).
//
//   node scripts/bench/metadata-latency.ts
//   BENCH_IMAGES=10000 BENCH_CREATE_BLOCK=500 BENCH_ROUNDS=5 BENCH_REQS=100 node scripts/bench/metadata-latency.ts
import { join } from 'node:path'
import {
  LoadProbe, envInt, fmt, log, mdTable, median, percentile, printHeader, processCpu, processMemory, runBench, startAgent,
  startNodeServer, workDir
} from './lib.ts'
import type { BenchAgent, Load } from './lib.ts'

const FLOOR_SERVER = `
const http = require('node:http')
const body = JSON.stringify({ id: '00000000-0000-4000-8000-000000000000', name: 'floor', status: 'queued', pad: 'x'.repeat(900) })
const srv = http.createServer((req, res) => {
  req.resume()
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body))
})
srv.keepAliveTimeout = 60000
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port))
`

/** One request, body read to the end; returns milliseconds. */
async function timedFetch (url: string, init?: RequestInit, expect = 200): Promise<{ ms: number, body: string }> {
  const t0 = performance.now()
  const res = await fetch(url, init)
  const body = await res.text()
  const ms = performance.now() - t0
  if (res.status !== expect) throw new Error(`${init?.method ?? 'GET'} ${url}: ${res.status} ${body.slice(0, 200)}`)
  return { ms, body }
}

interface Sample { kind: string, round: number, ms: number }

await runBench(async cleanup => {
  const total = envInt('BENCH_IMAGES', 10_000)
  const block = Math.max(1, envInt('BENCH_CREATE_BLOCK', 500))
  const rounds = envInt('BENCH_ROUNDS', 5)
  const perRound = envInt('BENCH_REQS', 100)
  printHeader(`Metadata latency: create, show, list with ${total} images`, { BENCH_IMAGES: total, BENCH_CREATE_BLOCK: block, BENCH_ROUNDS: rounds, BENCH_REQS: perRound })

  const dir = await workDir(cleanup, 'metadata')
  const agent = await startAgent(cleanup, join(dir, 'agent'))
  const floor = await startNodeServer(cleanup, FLOOR_SERVER)
  const rssIdle = processMemory(agent.pid).rssKiB

  // Creates: blocks of `block` images, alternately one at a time and 8 at a time, so both
  // concurrencies see the same range of store sizes.
  const createBody = (i: number): string => JSON.stringify({ name: `bench-${String(i).padStart(6, '0')}`, disk_format: 'raw', container_format: 'bare', tags: ['bench'], os_distro: 'debian' })
  const post = { method: 'POST', headers: { 'content-type': 'application/json' } }
  const creates: Record<number, number[]> = { 1: [], 8: [] }
  const createWall: Record<number, number> = { 1: 0, 8: 0 }
  const ids: string[] = []
  const createProbe = new LoadProbe()
  const createCpu0 = processCpu(agent.pid)
  const createT0 = performance.now()
  let next = 0
  for (let b = 0; next < total; b++) {
    const concurrency = b % 2 === 0 ? 1 : 8
    const end = Math.min(total, next + block)
    const t0 = performance.now()
    const worker = async (): Promise<void> => {
      while (next < end) {
        const i = next++
        const { ms, body } = await timedFetch(`${agent.url}/v2/images`, { ...post, body: createBody(i) }, 201)
        creates[concurrency].push(ms)
        ids.push((JSON.parse(body) as { id: string }).id)
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
    createWall[concurrency] += (performance.now() - t0) / 1000
    if ((b + 1) % 4 === 0 || next >= total) log(`created ${next} images`)
  }
  const createSec = (performance.now() - createT0) / 1000
  const createCpu = processCpu(agent.pid) - createCpu0
  const createLoad = createProbe.end(createCpu)
  const rssAfterCreates = processMemory(agent.pid).rssKiB

  const pick = (): string => ids[Math.floor(Math.random() * ids.length)]
  const someName = (): string => `bench-${String(Math.floor(Math.random() * total)).padStart(6, '0')}`
  const kinds: Array<{ kind: string, url: (base: string) => string }> = [
    { kind: 'floor: node:http constant JSON (separate process)', url: () => `${floor.url}/v2/images/x` },
    { kind: 'show GET /v2/images/{id}', url: base => `${base}/v2/images/${pick()}` },
    { kind: 'list GET /v2/images (default limit 25)', url: base => `${base}/v2/images` },
    { kind: 'list GET /v2/images?limit=1000', url: base => `${base}/v2/images?limit=1000` },
    { kind: 'list GET /v2/images?name=<one image>', url: base => `${base}/v2/images?name=${someName()}` },
    { kind: 'list GET /v2/images?sort_key=name&sort_dir=asc', url: base => `${base}/v2/images?sort_key=name&sort_dir=asc` }
  ]

  /** Rounds of `perRound` sequential requests of each kind, kinds rotated each round. */
  const measure = async (phase: string, current: BenchAgent): Promise<{ samples: Sample[], loads: Load[], cpu: Map<string, number>, sec: Map<string, number> }> => {
    const serverCpu = (): number => processCpu(current.pid) + processCpu(floor.pid)
    // Warm-up: JIT and connections, not measured.
    for (const k of kinds) for (let i = 0; i < 20; i++) await timedFetch(k.url(current.url))
    const samples: Sample[] = []
    const loads: Load[] = []
    const cpu = new Map<string, number>()
    const sec = new Map<string, number>()
    for (let round = 0; round < rounds; round++) {
      const probe = new LoadProbe()
      const cpuRound0 = serverCpu()
      for (let k = 0; k < kinds.length; k++) {
        const { kind, url } = kinds[(k + round) % kinds.length]
        const cpu0 = serverCpu()
        const t0 = performance.now()
        for (let i = 0; i < perRound; i++) samples.push({ kind, round, ms: (await timedFetch(url(current.url))).ms })
        cpu.set(kind, (cpu.get(kind) ?? 0) + serverCpu() - cpu0)
        sec.set(kind, (sec.get(kind) ?? 0) + (performance.now() - t0) / 1000)
      }
      const load = probe.end(serverCpu() - cpuRound0)
      loads.push(load)
      log(`${phase} round ${round}: machine ${fmt(load.machinePct)} %, others ${fmt(load.othersPct)} %, load ${load.load1.toFixed(2)}`)
    }
    return { samples, loads, cpu, sec }
  }

  const fresh = await measure('fresh', agent)
  const listed = (JSON.parse((await timedFetch(`${agent.url}/v2/images?limit=1000`)).body) as { images: unknown[] }).images.length
  const rssEnd = processMemory(agent.pid).rssKiB

  await agent.stop()
  const t0 = performance.now()
  const restarted = await startAgent(cleanup, join(dir, 'agent'))
  const startSec = (performance.now() - t0) / 1000
  const rssRestarted = processMemory(restarted.pid).rssKiB
  const again = await measure('restarted', restarted)

  const row = (name: string, xs: number[], extra: string[]): string[] => [
    name, String(xs.length), fmt(percentile(xs, 50), 2), fmt(percentile(xs, 99), 2), fmt(Math.max(...xs), 1), ...extra
  ]
  const floorP50 = percentile(fresh.samples.filter(s => s.kind === kinds[0].kind).map(s => s.ms), 50)
  const rows: string[][] = []
  for (const c of [1, 8]) {
    rows.push(row(`create POST /v2/images, concurrency ${c}`, creates[c], [
      fmt(percentile(creates[c], 50) / floorP50, 1), `${fmt(creates[c].length / createWall[c])} creates/s`, '–'
    ]))
  }
  for (const [label, m] of [['', fresh], ['after restart: ', again]] as const) {
    const floorOf = percentile(m.samples.filter(s => s.kind === kinds[0].kind).map(s => s.ms), 50)
    for (const { kind } of kinds) {
      const xs = m.samples.filter(s => s.kind === kind).map(s => s.ms)
      const perRoundP50 = Array.from({ length: rounds }, (_, r) => fmt(percentile(m.samples.filter(s => s.kind === kind && s.round === r).map(s => s.ms), 50), 2)).join(', ')
      rows.push(row(`${label}${kind}`, xs, [fmt(percentile(xs, 50) / floorOf, 1), perRoundP50, fmt(100 * (m.cpu.get(kind) ?? 0) / (m.sec.get(kind) ?? 1))]))
    }
  }
  console.log(mdTable(['request', 'n', 'p50 ms', 'p99 ms', 'max ms', 'p50 / floor p50', 'p50 per round (or create rate)', 'server CPU %'], rows))
  const late = creates[1].slice(-Math.min(block, creates[1].length))
  console.log(`\n- images in the store: ${ids.length}; a limit=1000 page returned ${listed}.`)
  console.log(`- creates took ${fmt(createSec, 1)} s in all, agent CPU ${fmt(100 * createCpu / createSec)} %, others ${fmt(createLoad.othersPct)} %, load ${createLoad.load1.toFixed(2)}; the last ${late.length} one-at-a-time creates (store nearly full): p50 ${fmt(percentile(late, 50), 2)} ms, p99 ${fmt(percentile(late, 99), 2)} ms.`)
  console.log(`- show/list rounds, others' CPU %: ${fresh.loads.map(l => fmt(l.othersPct)).join(', ')}; after restart ${again.loads.map(l => fmt(l.othersPct)).join(', ')}. Load avg: ${[...fresh.loads, ...again.loads].map(l => l.load1.toFixed(2)).join(', ')}.`)
  console.log(`- restart with ${ids.length} images: ready in ${fmt(startSec, 2)} s (spawn to "agent started").`)
  console.log(`- agent RSS: ${fmt(rssIdle / 1024)} MiB idle and empty, ${fmt(rssAfterCreates / 1024)} MiB after the creates, ${fmt(rssEnd / 1024)} MiB after the first rounds; ${fmt(rssRestarted / 1024)} MiB just after the restart, ${fmt(processMemory(restarted.pid).rssKiB / 1024)} MiB at the end.`)
  console.log(`- median of the per-round p50s, show: ${fmt(median(Array.from({ length: rounds }, (_, r) => percentile(fresh.samples.filter(s => s.kind === kinds[1].kind && s.round === r).map(s => s.ms), 50))), 2)} ms.`)
  console.log('- client: node fetch (undici) with keep-alive, one request at a time for show/list; latency includes reading the whole body. "server CPU %" counts the agent (or the floor server), of one core; tick-granular (10 ms), so rough.\n')
})
