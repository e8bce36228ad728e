// (c) Metadata convergence across a mesh of agents (issue 3, item 8c; issue 6, item 5): BENCH_AGENTS
// agent processes on 127.0.0.1, each given ONE bootstrap address: the first agent's (star, the
// default: the hardest case for spreading) or the previous agent's (chain). Peer exchange then
// builds each agent's peer set; the benchmark waits until every agent holds
// min(6, BENCH_AGENTS - 1) peers, lets it settle BENCH_SETTLE_MS and reports the peer-degree
// distribution (and that the connection graph is connected). Then BENCH_IMAGES images are created
// one at a time, each on a random agent, and each change is followed hop by hop: every agent runs
// at debug level and says when it merged a change, how (gossip or anti-entropy sync) and from which
// peer ('merged changes', metadata-sync.ts), and the origin says how many peers its publish reached.
// The bench reads those lines (pino's `time`, ms, same clock for all) instead of polling 50 HTTP
// APIs, which alone kept a core busy. It reports the time from sending the POST until every agent
// merged the record, the hop count and per-hop delay of each arrival, and the share that came by
// gossip; at the end every agent must list every image (GET /v2/images). Last, the mesh is left idle
// for BENCH_IDLE_MS and the CPU and RSS of all agents together are measured.
// Targets: p99 < 200 ms at 10 agents, < 2 s at 50.
//
//   node scripts/bench/convergence.ts
//   BENCH_AGENTS=50 BENCH_IMAGES=40 node scripts/bench/convergence.ts
//   BENCH_AGENTS=10 BENCH_IMAGES=100 BENCH_TOPOLOGY=chain BENCH_GAP_MS=100 node scripts/bench/convergence.ts
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { agentStatus, multiaddrOf, peerIdOf, waitFor } from '@peerglance/testing'
import {
  LoadProbe, envInt, fmt, log, mdTable, median, percentile, printHeader, processCpu, processMemory, runBench, startAgent, workDir
} from './lib.ts'
import type { BenchAgent } from './lib.ts'

/** How an agent first got a record: when it merged it, by which path, from which peer. */
interface Arrival { at: number, via: 'gossip' | 'sync' | 'origin', from: string | undefined }

/** Reads an agent's log as it grows: the first arrival of every record key, and its publishes. */
class Trace {
  readonly arrivals = new Map<string, Arrival>()
  readonly publishes: Array<{ at: number, recipients: number, peers: number }> = []
  readonly agent: BenchAgent
  #read = 0

  constructor (agent: BenchAgent) {
    this.agent = agent
  }

  scan (): void {
    const logs = this.agent.agent.logs
    for (; this.#read < logs.length; this.#read++) {
      const l = logs[this.#read]
      if (l.msg === 'merged changes' && Array.isArray(l.keys)) {
        for (const key of l.keys as string[]) if (!this.arrivals.has(key)) this.arrivals.set(key, { at: l.time as number, via: l.via as 'gossip' | 'sync', from: l.peer as string })
      } else if (l.msg === 'published changes') {
        this.publishes.push({ at: l.time as number, recipients: l.recipients as number, peers: l.peers as number })
      }
    }
  }
}

/** The peer set's dial target (packages/mesh/src/constants.ts, DEFAULT_PEER_TARGET). */
const PEER_TARGET = 6

/** Components of the graph "agent i holds a connection to agent j". */
function components (peers: string[][], ids: string[]): number {
  const index = new Map(ids.map((id, i) => [id, i]))
  const seen = new Array<boolean>(ids.length).fill(false)
  let count = 0
  for (let start = 0; start < ids.length; start++) {
    if (seen[start]) continue
    count++
    const stack = [start]
    seen[start] = true
    while (stack.length > 0) {
      const i = stack.pop()!
      for (const id of peers[i]) {
        const j = index.get(id)
        if (j != null && !seen[j]) {
          seen[j] = true
          stack.push(j)
        }
      }
    }
  }
  return count
}

await runBench(async cleanup => {
  const agentCount = Math.max(2, envInt('BENCH_AGENTS', 10))
  const images = Math.max(1, envInt('BENCH_IMAGES', 100))
  const gapMs = envInt('BENCH_GAP_MS', 100)
  const settleMs = envInt('BENCH_SETTLE_MS', 10_000)
  const idleMs = envInt('BENCH_IDLE_MS', 20_000)
  const topology = process.env.BENCH_TOPOLOGY ?? 'star'
  if (topology !== 'star' && topology !== 'chain') throw new Error(`BENCH_TOPOLOGY must be star or chain, not ${topology}`)
  const targetMs = agentCount <= 10 ? 200 : 2000
  printHeader(`Metadata convergence across ${agentCount} agents`, {
    BENCH_AGENTS: agentCount, BENCH_IMAGES: images, BENCH_TOPOLOGY: topology, BENCH_GAP_MS: gapMs, BENCH_SETTLE_MS: settleMs, BENCH_IDLE_MS: idleMs
  })

  const dir = await workDir(cleanup, 'convergence')
  const t0 = performance.now()
  // Debug level: each agent says when and how it merged each change (metadata-sync.ts).
  const debug = ['--log-level', 'debug']
  const agents: BenchAgent[] = [await startAgent(cleanup, join(dir, 'agent-0'), debug)]
  // All at once: stopping fifty agents one by one outlasts the patience of whoever sent SIGTERM.
  cleanup.add(async () => { await Promise.all(agents.map(async a => { await a.stop() })) })
  if (topology === 'star') {
    const seed = multiaddrOf(agents[0].agent)
    // Five at a time: fifty Node processes starting at once on two cores outlast any start timeout.
    for (let i = 1; i < agentCount; i += 5) {
      agents.push(...await Promise.all(Array.from({ length: Math.min(5, agentCount - i) }, async (_, k) =>
        await startAgent(cleanup, join(dir, `agent-${i + k}`), [...debug, '--bootstrap', seed]))))
    }
  } else {
    for (let i = 1; i < agentCount; i++) agents.push(await startAgent(cleanup, join(dir, `agent-${i}`), [...debug, '--bootstrap', multiaddrOf(agents[i - 1].agent)]))
  }
  log(`${agentCount} agents started in ${fmt((performance.now() - t0) / 1000, 1)} s`)
  // Peer exchange grows each agent's peer set from its one bootstrap address.
  const want = Math.min(PEER_TARGET, agentCount - 1)
  const ids = agents.map(a => peerIdOf(a.agent))
  try {
    await waitFor(async () => (await Promise.all(agents.map(async a => (await agentStatus(a.url)).peers.length))).every(n => n >= want),
      { timeoutMs: 120_000, intervalMs: 500, what: `every agent holding ${want} peers` })
    log(`every agent holds >= ${want} peers after ${fmt((performance.now() - t0) / 1000, 1)} s; settling ${settleMs / 1000} s`)
  } catch (err) {
    // Reported, not fatal: the distribution below says how far from the target the mesh is.
    const now = await Promise.all(agents.map(async a => (await agentStatus(a.url)).peers.length))
    log(`${(err as Error).message}; degrees now: ${now.join(' ')}`)
  }
  // Let the bootstrap agent shed its surplus and gossipsub's heartbeats build the mesh.
  await sleep(settleMs)
  const peerLists = await Promise.all(agents.map(async a => (await agentStatus(a.url)).peers))
  const degrees = peerLists.map(p => p.length)
  const histogram = new Map<number, number>()
  for (const d of degrees) histogram.set(d, (histogram.get(d) ?? 0) + 1)

  const traces = agents.map(a => new Trace(a))
  const index = new Map(ids.map((id, i) => [id, i]))
  const cpu0 = agents.map(a => processCpu(a.pid))
  const probe = new LoadProbe()
  const measureT0 = performance.now()
  const convergence: number[] = []
  const perAgent: number[] = []
  const createMs: number[] = []
  const hops = new Map<number, number>()
  const hopMs: Record<'gossip' | 'sync', number[]> = { gossip: [], sync: [] }
  const recipients: number[] = []
  let missed = 0
  const slowest: number[] = new Array(agentCount).fill(0)
  for (let n = 0; n < images; n++) {
    const origin = Math.floor(Math.random() * agentCount)
    const sent = Date.now()
    const res = await fetch(`${agents[origin].url}/v2/images`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: `convergence-${n}`, disk_format: 'raw', container_format: 'bare', tags: ['bench'] })
    })
    const created = Date.now()
    if (res.status !== 201) throw new Error(`create on agent ${origin}: ${res.status} ${await res.text()}`)
    const { id } = await res.json() as { id: string }
    createMs.push(created - sent)
    // Wait (reading logs, no request to any agent) until every agent merged it, or 30 s.
    const deadline = sent + 30_000
    for (;;) {
      for (const t of traces) t.scan()
      if (traces.every((t, i) => i === origin || t.arrivals.has(id)) || Date.now() > deadline) break
      await sleep(20)
    }
    const publish = traces[origin].publishes.find(p => p.at >= sent)
    if (publish != null) recipients.push(publish.recipients)
    const arrivals: Array<Arrival | undefined> = traces.map((t, i) => i === origin ? { at: publish?.at ?? created, via: 'origin', from: undefined } : t.arrivals.get(id))
    const times = arrivals.map(a => a == null ? Number.POSITIVE_INFINITY : a.at - sent)
    const last = Math.max(...times)
    convergence.push(last)
    times.forEach((t, i) => {
      if (i === origin) return
      perAgent.push(t)
      if (!Number.isFinite(t)) missed++
    })
    slowest[times.indexOf(last)]++
    // Hops: each arrival's peer is its parent; the origin is hop 0.
    const depth = (i: number, seen = 0): number => {
      const a = arrivals[i]
      if (a == null || a.via === 'origin' || seen > agentCount) return 0
      const parent = a.from == null ? undefined : index.get(a.from)
      return parent == null ? 1 : 1 + depth(parent, seen + 1)
    }
    arrivals.forEach((a, i) => {
      if (a == null || a.via === 'origin') return
      const d = depth(i)
      hops.set(d, (hops.get(d) ?? 0) + 1)
      const parent = a.from == null ? undefined : index.get(a.from)
      const parentAt = parent == null ? undefined : arrivals[parent]?.at
      if (parentAt != null) hopMs[a.via].push(a.at - parentAt)
    })
    if ((n + 1) % 10 === 0) log(`${n + 1}/${images} images: last ${fmt(last)} ms, p50 so far ${fmt(median(convergence))} ms`)
    await sleep(gapMs)
  }
  const ours = agents.reduce((sum, a, i) => sum + processCpu(a.pid) - cpu0[i], 0)
  const load = probe.end(ours)
  const measureSec = (performance.now() - measureT0) / 1000

  // The mesh at rest: anti-entropy rounds, pings, announcements, gossipsub heartbeats.
  await sleep(2000)
  const idleCpu0 = agents.map(a => processCpu(a.pid))
  const idleProbe = new LoadProbe()
  const idleT0 = performance.now()
  await sleep(idleMs)
  const idleOurs = agents.reduce((sum, a, i) => sum + processCpu(a.pid) - idleCpu0[i], 0)
  const idleSec = (performance.now() - idleT0) / 1000
  const idleLoad = idleProbe.end(idleOurs)

  // Sanity: every agent lists every image at the end.
  for (const a of agents) {
    const res = await fetch(`${a.url}/v2/images?tag=bench&limit=1000`)
    const listed = (await res.json() as { images: unknown[] }).images.length
    if (listed !== images) throw new Error(`${a.url} lists ${listed} of ${images} images`)
  }
  const rss = agents.map(a => processMemory(a.pid).rssKiB / 1024)

  console.log(mdTable(
    ['peer set', 'value'],
    [
      ['degree (connections per agent) min / p50 / p90 / max', `${Math.min(...degrees)} / ${fmt(median(degrees))} / ${fmt(percentile(degrees, 90))} / ${Math.max(...degrees)}`],
      ['degree histogram (degree:agents)', [...histogram].sort((x, y) => x[0] - y[0]).map(([d, n]) => `${d}:${n}`).join(' ')],
      ['bootstrap agent (everyone was given its address)', String(degrees[0])],
      ['connections in the mesh (of n(n-1)/2 possible)', `${degrees.reduce((x, y) => x + y, 0) / 2} of ${agentCount * (agentCount - 1) / 2}`],
      ['connected components of the connection graph', String(components(peerLists, ids))]
    ]
  ))
  console.log()
  const p99 = percentile(convergence, 99)
  console.log(mdTable(
    ['measure', 'samples', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
    [
      ['POST sent → every agent merged the record', String(convergence.length), fmt(median(convergence), 1), fmt(percentile(convergence, 90), 1), fmt(p99, 1), fmt(Math.max(...convergence), 1)],
      ['POST sent → one other agent merged it', String(perAgent.length), fmt(median(perAgent), 1), fmt(percentile(perAgent, 90), 1), fmt(percentile(perAgent, 99), 1), fmt(Math.max(...perAgent), 1)],
      ['POST on the origin (201 received)', String(createMs.length), fmt(median(createMs), 1), fmt(percentile(createMs, 90), 1), fmt(percentile(createMs, 99), 1), fmt(Math.max(...createMs), 1)],
      ...(['gossip', 'sync'] as const).filter(v => hopMs[v].length > 0).map(v =>
        [`one hop by ${v} (arrival − the sender's own arrival)`, String(hopMs[v].length), fmt(median(hopMs[v]), 1), fmt(percentile(hopMs[v], 90), 1), fmt(percentile(hopMs[v], 99), 1), fmt(Math.max(...hopMs[v]), 1)])
    ]
  ))
  console.log()
  const byGossip = hopMs.gossip.length
  const bySync = hopMs.sync.length
  if (missed > 0) console.log(`- MISSED: ${missed} of ${perAgent.length} (image, agent) pairs not merged within 30 s`)
  console.log(`- target p99 < ${targetMs} ms: ${p99 < targetMs ? 'met' : 'NOT met'} (p99 ${fmt(p99, 1)} ms; nearest-rank over ${convergence.length} images)`)
  console.log(`- arrivals by gossip ${byGossip}, by anti-entropy sync ${bySync}; hops from the origin (hops:arrivals) ${[...hops].sort((x, y) => x[0] - y[0]).map(([h, c]) => `${h}:${c}`).join(' ')}`)
  console.log(`- the origin's publish reached (flood publish, peers above gossipsub's publish threshold) min / p50 / max ${Math.min(...recipients)} / ${fmt(median(recipients))} / ${Math.max(...recipients)} peers`)
  console.log('- times from the agents\' own logs (pino `time`, ms) on this machine\'s one clock; a record is merged before it is listed')
  console.log(`- agent that saw each image last (by index): ${slowest.map((n, i) => `${i}:${n}`).join(' ')}`)
  console.log(`- machine during the ${fmt(measureSec, 1)} s measurement: ${fmt(load.machinePct)} % of one core busy (the ${agentCount} agents ${fmt(100 * ours / measureSec)} %, this bench and the rest ${fmt(load.machinePct - 100 * ours / measureSec)} %), iowait ${fmt(load.iowaitPct)} %, load1 ${fmt(load.load1, 2)}`)
  console.log(`- idle mesh, ${fmt(idleSec, 1)} s with nothing written: the ${agentCount} agents used ${fmt(100 * idleOurs / idleSec, 1)} % of one core together (${fmt(1000 * idleOurs / idleSec / agentCount, 1)} ms CPU per second per agent); machine ${fmt(idleLoad.machinePct)} % of one core busy (others' work included), load1 ${fmt(idleLoad.load1, 2)}`)
  console.log(`- RSS of the whole mesh at the end: ${fmt(rss.reduce((x, y) => x + y, 0))} MiB (per agent median ${fmt(median(rss))} MiB, max ${fmt(Math.max(...rss))} MiB)\n`)
})
