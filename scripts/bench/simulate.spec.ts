// The swarm simulator's model (simulate-network.ts, simulate-swarm.ts): what must hold for its
// figures to mean anything. Bytes are conserved, no link carries more than its capacity, and no
// host finishes before the Kumar–Ross bound allows.
import { describe, expect, it } from 'vitest'
import { CapacityExceededError, FlowNetwork, Simulation } from './simulate-network.ts'
import type { TopologyInit } from './simulate-network.ts'
import { SwarmModel } from './simulate-swarm.ts'

const TOPOLOGY: TopologyInit = { hosts: 8, rackSize: 4, hostRate: 10, oversubscription: 2, rackLatencyMs: 0.05, coreLatencyMs: 0.25, stepMs: 1 }

function network (init: Partial<TopologyInit> = {}): FlowNetwork {
  return new FlowNetwork(new Simulation(), { ...TOPOLOGY, ...init })
}

describe('swarm simulator: the network model', () => {
  it('flows sharing an uplink split it, and the link never carries more than its capacity', async () => {
    const net = network()
    const done: number[] = []
    net.start(0, 1, 1000, () => done.push(net.sim.now))
    net.start(0, 2, 1000, () => done.push(net.sim.now))
    await net.sim.run(() => done.length === 2, 10_000)
    // 2,000 bytes through a 10 bytes/ms uplink: not before 200 ms, and within a step of it.
    expect(Math.max(...done)).toBeGreaterThanOrEqual(200)
    expect(Math.max(...done)).toBeLessThanOrEqual(200 + TOPOLOGY.stepMs)
    expect(net.carried[net.hostUp(0)]).toBeCloseTo(2000, 6)
    expect(net.peakUtilisation).toBeLessThanOrEqual(1)
  })

  it('an oversubscribed rack uplink limits what leaves the rack', async () => {
    // Racks of 4 hosts at 10 bytes/ms each, 2:1: 20 bytes/ms leave a rack.
    const net = network()
    let done = 0
    for (const src of [0, 1, 2, 3]) net.start(src, src + 4, 1000, () => { done++ })
    await net.sim.run(() => done === 4, 10_000)
    expect(net.sim.now).toBeGreaterThanOrEqual(4000 / 20)
    expect(net.carried[net.rackUp(0)]).toBeCloseTo(4000, 6)
    expect(net.carried[net.rackDown(1)]).toBeCloseTo(4000, 6)
  })

  it('random traffic: bytes are conserved and every link stays within capacity', async () => {
    const net = network({ hosts: 24, rackSize: 6, oversubscription: 3, stepMs: 2 })
    let random = 7
    const next = (): number => { random = (random * 1103515245 + 12345) % 2147483648; return random / 2147483648 }
    let started = 0
    let finished = 0
    let bytes = 0
    const more = (): void => {
      if (started >= 400) return
      started++
      const src = Math.floor(next() * 24)
      const dst = (src + 1 + Math.floor(next() * 23)) % 24
      const size = 100 + Math.floor(next() * 5000)
      bytes += size
      net.start(src, dst, size, () => { finished++; more() })
    }
    for (let i = 0; i < 40; i++) more()
    // The network checks capacities itself at every rate it gives and every step (CapacityExceededError).
    await net.sim.run(() => finished === 400, 1e6)
    expect(finished).toBe(400)
    let up = 0
    let down = 0
    for (let h = 0; h < 24; h++) {
      up += net.carried[net.hostUp(h)]
      down += net.carried[net.hostDown(h)]
    }
    expect(up).toBeCloseTo(bytes, 3)
    expect(down).toBeCloseTo(bytes, 3)
    for (let l = 0; l < net.capacity.length; l++) expect(net.carried[l]).toBeLessThanOrEqual(net.capacity[l] * net.sim.now * (1 + 1e-6))
    expect(net.peakUtilisation).toBeLessThanOrEqual(1 + 1e-9)
  })

  it('the capacity check fails the run when a link moved more than it could (a link slowed under a flow)', async () => {
    const net = network()
    net.start(0, 1, 1000, () => {})
    net.capacity[net.hostUp(0)] = 5
    await expect(net.sim.run(() => false, 10_000)).rejects.toThrow(CapacityExceededError)
  })
})

describe('swarm simulator: the real download sessions over the model', () => {
  it('every host gets the whole image, none before the bound, and the seed sends it about once', async () => {
    const downloaders = 30
    const model = new SwarmModel({
      downloaders,
      imageBytes: 48 * 1024 * 1024,
      chunkBytes: 1024 * 1024,
      rackSize: 8,
      hostRate: 125_000,
      oversubscription: 2,
      rackLatencyMs: 0.05,
      coreLatencyMs: 0.25,
      stepMs: 2,
      seed: 3
    })
    const r = await model.run()
    expect(r.finished.every(Number.isFinite)).toBe(true)
    expect(r.firstChunk.every(t => Number.isFinite(t) && t <= Math.min(...r.finished))).toBe(true)
    // Bound never beaten: no host before S/d, the last not before the Kumar–Ross bound.
    for (const t of r.finished) expect(t).toBeGreaterThanOrEqual(r.imageBytes / 125_000)
    expect(Math.max(...r.finished)).toBeGreaterThanOrEqual(r.boundMs)
    // Bytes conserved: what the flows carried left some NIC and reached one; every host got at least S.
    const net = model.network
    let up = 0
    let down = 0
    for (let h = 0; h <= downloaders; h++) {
      up += net.carried[net.hostUp(h)]
      down += net.carried[net.hostDown(h)]
      if (h > 0) expect(net.carried[net.hostDown(h)]).toBeGreaterThanOrEqual(r.imageBytes * (1 - 1e-9))
    }
    expect(up).toBeCloseTo(down, 0)
    expect(up).toBeCloseTo(r.sent, 0)
    expect(r.seedSent).toBeGreaterThanOrEqual(r.imageBytes * (1 - 1e-9))
    expect(r.seedSent / r.imageBytes).toBeLessThanOrEqual(1.05)
    expect(r.peakUtilisation).toBeLessThanOrEqual(1 + 1e-9)
  })
})
