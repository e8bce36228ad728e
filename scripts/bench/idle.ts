// The agent at rest (issue 8): what BENCH_AGENTS agents on 127.0.0.1 (the first one everyone's
// bootstrap) cost while nothing happens: CPU per agent in ms per second, by thread, and RSS (with
// its private part, RssAnon, and the node binary's file pages, RssFile). Every hypervisor pays
// this all day, and it is part of every "CPU-seconds per GiB delivered" figure.
// The agents start, connect (each holds min(6, BENCH_AGENTS - 1) peers), settle BENCH_SETTLE_MS
// (start-up compilation and the first syncs are over), then are measured for BENCH_IDLE_MS.
// BENCH_AGENT_NODE_OPTIONS='--cpu-prof --cpu-prof-dir=DIR' profiles them (SIGTERM writes the files).
//
//   node scripts/bench/idle.ts
//   BENCH_AGENTS=9 BENCH_IDLE_MS=60000 node scripts/bench/idle.ts
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { agentStatus, multiaddrOf } from '@peerglance/testing'
import {
  LoadProbe, envInt, fmt, log, mdTable, median, printHeader, processMemory, runBench, startAgent, threadCpu, threadCpuDelta, workDir
} from './lib.ts'
import type { BenchAgent } from './lib.ts'

const MB = 1e6

await runBench(async cleanup => {
  const count = Math.max(1, envInt('BENCH_AGENTS', 3))
  const settleMs = envInt('BENCH_SETTLE_MS', 20_000)
  const idleMs = envInt('BENCH_IDLE_MS', 30_000)
  printHeader(`${count} agents at rest`, { BENCH_AGENTS: count, BENCH_SETTLE_MS: settleMs, BENCH_IDLE_MS: idleMs })

  const dir = await workDir(cleanup, 'idle')
  const agents: BenchAgent[] = [await startAgent(cleanup, join(dir, 'agent-0'))]
  cleanup.add(async () => { await Promise.all(agents.map(async a => { await a.stop() })) })
  const seed = multiaddrOf(agents[0].agent)
  for (let i = 1; i < count; i += 5) {
    agents.push(...await Promise.all(Array.from({ length: Math.min(5, count - i) }, async (_, k) =>
      await startAgent(cleanup, join(dir, `agent-${i + k}`), ['--bootstrap', seed]))))
  }
  const want = Math.min(6, count - 1)
  const deadline = Date.now() + 120_000
  while ((await Promise.all(agents.map(async a => (await agentStatus(a.url)).peers.length))).some(n => n < want)) {
    if (Date.now() > deadline) throw new Error(`not every agent holds ${want} peers after 120 s`)
    await sleep(500)
  }
  log(`${count} agents, each with >= ${want} peers; settling ${settleMs / 1000} s`)
  await sleep(settleMs)

  const before = agents.map(a => threadCpu(a.pid))
  const probe = new LoadProbe()
  const t0 = performance.now()
  await sleep(idleMs)
  const sec = (performance.now() - t0) / 1000
  const after = agents.map(a => threadCpu(a.pid))
  const deltas = agents.map((a, i) => threadCpuDelta(before[i], after[i]))
  const totals = deltas.map(d => Object.values(d).reduce((x, y) => x + y, 0))
  const load = probe.end(totals.reduce((x, y) => x + y, 0))
  const degrees = await Promise.all(agents.map(async a => (await agentStatus(a.url)).peers.length))
  const memory = agents.map(a => processMemory(a.pid))

  const msps = (x: number): string => fmt(1000 * x / sec, 1)
  console.log(mdTable(
    ['agent', 'peers', 'CPU ms/s', 'MainThread', 'V8Worker', 'libuv-worker', 'other', 'RSS MB', 'RssAnon MB', 'RssFile MB'],
    agents.map((_, i) => [String(i), String(degrees[i]), msps(totals[i]), msps(deltas[i].MainThread), msps(deltas[i].V8Worker),
      msps(deltas[i]['libuv-worker']), msps(deltas[i].other + deltas[i].WorkerThread),
      fmt(memory[i].rssKiB * 1024 / MB), fmt(memory[i].anonKiB * 1024 / MB), fmt(memory[i].fileKiB * 1024 / MB)])
  ))
  console.log()
  // 'other' by thread name (e.g. the profiler's sampler under --cpu-prof).
  const others = new Map<string, number>()
  for (let i = 0; i < agents.length; i++) {
    for (const [tid, t] of after[i]) if (!(t.name in deltas[i])) others.set(t.name, (others.get(t.name) ?? 0) + t.sec - (before[i].get(tid)?.sec ?? 0))
  }
  log(`other threads, ms/s per agent: ${[...others].filter(([, s]) => s > 0).map(([name, s]) => `${name} ${msps(s / agents.length)}`).join(', ') || 'none'}`)
  log(`per agent: CPU median ${msps(median(totals))} ms/s (all ${count}: ${fmt(totals.reduce((x, y) => x + y, 0) / sec, 3)} CPU-s per second), ` +
    `RSS median ${fmt(median(memory.map(m => m.rssKiB)) * 1024 / MB)} MB (RssAnon ${fmt(median(memory.map(m => m.anonKiB)) * 1024 / MB)}); ` +
    `over ${fmt(sec, 1)} s, load average ${fmt(load.load1, 2)}, others ${fmt(load.othersPct)} % of a core`)
})
