import { SwarmModel } from './simulate-swarm.ts'
const hosts = Number(process.argv[2] ?? 200), gib = Number(process.argv[3] ?? 2)
const m = new SwarmModel({ downloaders: hosts, imageBytes: gib*1024**3, chunkBytes: 4*1024*1024, rackSize: 40, hostRate: 1.25e6, oversubscription: Number(process.env.OVERSUB ?? 4), rackLatencyMs: 0.05, coreLatencyMs: 0.25, stepMs: 2, seed: 1, settings: JSON.parse(process.argv[4] ?? '{}') })
const net = m.network
let lastSeed = 0, lastHeld = 0, lastDown = 0
m.sim.every(250, () => {
  let held = 0, down = 0, done = 0, nearSeed = 0
  for (const a of m.agents.slice(1)) { held += a.heldCount; down += net.carried[net.hostDown(a.index)]; if (a.heldCount === m.n) done++; if ((a.session as any)?.self?.nearSeed) nearSeed++ }
  const seed = net.carried[net.hostUp(0)]
  console.log(`t=${m.sim.now.toFixed(0)} seedUp=${((seed-lastSeed)/250/1.25e6*100).toFixed(0)}% held=${(held/(hosts*m.n)*100).toFixed(1)}% rx=${((down-lastDown)/250/1.25e6/hosts*100).toFixed(0)}%/host done=${done} near=${nearSeed} flows=${net.active} seedRefused=${m.agents[0].refusedOnce}`)
  lastSeed = seed; lastDown = down
})
m.sim.at(4000, () => { for (const a of m.agents.slice(50, 53)) { const d = (a.session as any).debugState(); console.log(JSON.stringify({ local: d.local, inflight: d.inflight.length, waiters: d.waiters, cursors: d.cursors, downloaders: d.downloaders.length, peers: d.peers.map((p: any) => `${p.peer}:${p.held}:${p.load}:${p.state}`) })) } })
const r = await m.run()
console.log(r.reasons)
