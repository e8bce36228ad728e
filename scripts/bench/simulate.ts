// The swarm beyond this box (issue 8, item 5): the mesh's own download sessions and scheduling
// policy (packages/mesh/src/session.ts, scheduling.ts; not a copy) on a virtual clock over a
// modelled network (simulate-network.ts, simulate-swarm.ts): DOWNLOADERS hosts plus one seed in
// racks of RACK, every NIC at RATE each way, rack uplinks oversubscribed OVERSUB:1, a SIZE image
// read on every host at once. Prints completion p50/p90/p99/max against the Kumar–Ross bound
// max(S/u_seed, S/d_min, N·S/(u_seed + Σu_i)), when readers got their first chunk (the first
// byte), seed egress ÷ S, where the fetches came from, and what the simulation itself cost.
//
//   node scripts/bench/simulate.ts                                   # 1,000 hosts, 10 GiB, 10 Gbit/s, racks of 40, 4:1
//   node scripts/bench/simulate.ts --hosts 100 --size-gib 1 --reps 3
//   node scripts/bench/simulate.ts --chunk-mib 1 --step-ms 1
//   node scripts/bench/simulate.ts --hosts 8 --size-gib 0.25 --rate-gbit 0.2 --chunk-mib 1 --oversub 1 --trace   # the seed's link over time
//   node scripts/bench/simulate.ts --hosts 8 --size-gib 0.25 --rate-gbit 0.2 --chunk-mib 1 --oversub 1 --peer-target 8   # all connected, as in the shaped swarm
//   ... --slow-seed-flow 0.03 --read-mbyte-s 250   # the seed's flow to one host starved, readers that take time to catch up
import { cpuUsage } from 'node:process'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { fmt, GiB, mdTable, MiB, percentile } from './lib.ts'
import { SwarmModel } from './simulate-swarm.ts'

const { values: opts } = parseArgs({
  options: {
    hosts: { type: 'string', default: '1000' },
    'size-gib': { type: 'string', default: '10' },
    'rate-gbit': { type: 'string', default: '10' },
    'chunk-mib': { type: 'string', default: '4' },
    rack: { type: 'string', default: '40' },
    oversub: { type: 'string', default: '4' },
    'step-ms': { type: 'string', default: '5' },
    reps: { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
    'rack-peers': { type: 'string', default: '0' },
    'peer-target': { type: 'string' },
    trace: { type: 'boolean', default: false },
    'slow-seed-flow': { type: 'string' },
    'read-mbyte-s': { type: 'string' }
  }
})

function positive (raw: string | undefined, name: string): number {
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not ${raw}`)
  return n
}

const hosts = Math.round(positive(opts.hosts, '--hosts'))
const imageBytes = Math.round(positive(opts['size-gib'], '--size-gib') * GiB)
const gbit = positive(opts['rate-gbit'], '--rate-gbit')
const chunkBytes = Math.round(positive(opts['chunk-mib'], '--chunk-mib') * MiB)
const rackSize = Math.round(positive(opts.rack, '--rack'))
const oversubscription = positive(opts.oversub, '--oversub')
const stepMs = positive(opts['step-ms'], '--step-ms')
const reps = Math.round(positive(opts.reps, '--reps'))
const seed = Math.round(positive(opts.seed, '--seed'))
const hostRate = gbit * 1e9 / 8 / 1000

console.log(`# Swarm simulation: ${hosts} downloaders + 1 seed, ${fmt(imageBytes / GiB, 1)} GiB in ${fmt(chunkBytes / MiB, 1)} MiB chunks, ` +
  `${gbit} Gbit/s per host, racks of ${rackSize} at ${oversubscription}:1, rates shared every ${stepMs} ms\n`)
const rows: string[][] = []
for (let rep = 0; rep < reps; rep++) {
  const wall = performance.now()
  const cpu = cpuUsage()
  const model = new SwarmModel({
    downloaders: hosts,
    imageBytes,
    chunkBytes,
    rackSize,
    hostRate,
    oversubscription,
    rackLatencyMs: 0.05,
    coreLatencyMs: 0.25,
    stepMs,
    seed: seed + rep,
    rackPeers: Math.round(Number(opts['rack-peers'])),
    // One downloader's connection from the seed at this share of a link (the shaped swarm's starved flow).
    ...(opts['slow-seed-flow'] != null ? { flowCap: (src: number, dst: number) => src === 0 && dst === 1 ? positive(opts['slow-seed-flow'], '--slow-seed-flow') * hostRate : Infinity } : {}),
    ...(opts['read-mbyte-s'] != null ? { readRate: positive(opts['read-mbyte-s'], '--read-mbyte-s') * 1e6 / 1000 } : {}),
    // The agents' DEFAULT_PEER_TARGET unless given: the shaped swarm's 9 agents are all connected (--peer-target 8).
    ...(opts['peer-target'] != null ? { peerTarget: Math.round(positive(opts['peer-target'], '--peer-target')) } : {})
  })
  // Progress on stderr every 5 virtual seconds (a 1,000-host run takes minutes of CPU).
  model.sim.every(5000, () => {
    const held = model.agents.reduce((sum, a) => sum + (a.index === 0 ? 0 : a.heldCount), 0)
    console.error(`rep ${rep + 1}: t=${fmt(model.sim.now / 1000, 0)} s virtual, ${fmt(100 * held / (hosts * model.n), 1)} % of chunks held, ${fmt((performance.now() - wall) / 1000, 0)} s wall`)
  })
  // The seed's uplink per 0.5 virtual s (--trace): where it was not full, and the tail after it.
  const seedBytes: number[] = []
  if (opts.trace) model.sim.every(500, () => { seedBytes.push(model.network.carried[model.network.hostUp(0)]) })
  const r = await model.run()
  const s = (ms: number): string => fmt(ms / 1000, 2)
  if (opts.trace) {
    const perStep = hostRate * 500
    const profile = seedBytes.map((b, k) => (b - (seedBytes[k - 1] ?? 0)) / perStep)
    const doneAt = (seedBytes.findIndex(b => b >= 0.995 * r.seedSent) + 1) * 0.5
    for (const a of model.agents.slice(1)) console.error(`rep ${rep + 1}: ${a.self} held 50/90 % at ${s(a.heldAt.half)}/${s(a.heldAt.most)} s, read them at ${s(a.readAt.half)}/${s(a.readAt.most)} s, done ${s(a.finishedAt)}`)
    console.error(`rep ${rep + 1}: seed link % per 0.5 s: ${profile.map(p => fmt(100 * p)).join(' ')}`)
    console.error(`rep ${rep + 1}: seed done (99.5 %) by ${fmt(doneAt, 1)} s, idle before ${fmt(doneAt - 0.995 * r.seedSent / hostRate / 1000, 2)} s; hosts done after it: ${r.finished.map(f => fmt(f / 1000 - doneAt, 2)).sort().join(' ')} s`)
  }
  const used = cpuUsage(cpu)
  const done = r.finished.filter(Number.isFinite)
  const at = (p: number): number => done.length === r.finished.length ? percentile(done, p) : NaN
  const ratio = (ms: number): string => fmt(ms / r.boundMs, 2)
  const reasons = Object.entries(r.reasons).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')
  rows.push([
    String(rep + 1), s(r.boundMs), `${s(at(50))} (${ratio(at(50))})`, `${s(at(90))} (${ratio(at(90))})`, `${s(at(99))} (${ratio(at(99))})`,
    `${s(Math.max(...r.finished))} (${ratio(Math.max(...r.finished))})`, `${done.length}/${r.finished.length}`,
    `${s(percentile(r.firstChunk, 50))} / ${s(Math.max(...r.firstChunk))}`,
    fmt(r.seedSent / imageBytes, 3), fmt(r.received / (hosts * imageBytes), 3), String(r.timeouts), String(r.readFailures),
    `${r.peers.min}–${r.peers.max} (${fmt(r.peers.mean, 1)})`, fmt(r.peakUtilisation, 3),
    fmt((performance.now() - wall) / 1000, 1), fmt((used.user + used.system) / 1e6, 1), String(r.events), loadavg().map(l => fmt(l, 1)).join(' ')
  ])
  console.error(`rep ${rep + 1}: fetches by reason: ${reasons}`)
}
console.log(mdTable([
  'rep', 'bound s', 'p50 s (÷ bound)', 'p90 s', 'p99 s', 'slowest s', 'done', 'first chunk p50 / max s', 'seed egress ÷ S', 'received ÷ N·S', 'timeouts', 'read retries',
  'peers per host', 'peak link use', 'wall s', 'CPU s', 'events', 'load avg'
], rows))
console.log('\nReference: Uber Kraken reports p50 1.0× and p99 1.8× of its bound for a 3 GB image to 2,600 hosts.')
