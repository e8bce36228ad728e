// The modelled network under the swarm simulator (simulate.ts): a virtual clock with an event
// queue, and a fluid model of TCP flows over hosts in racks.
//
// Links: every host has an uplink and a downlink (its NIC), every rack an uplink and a downlink
// to a non-blocking core, oversubscribed by `oversubscription` (the rack's hosts together can
// send that many times what its uplink carries). A flow crosses its source's uplink and its
// destination's downlink, and both racks' links when it leaves its rack.
//
// Rates are shared out every `stepMs` as an approximation of max-min fairness (what many TCP
// flows converge to): each flow first gets the smallest equal share of its links, then the
// capacity left on each link is offered, equally, to all its flows, twice. A flow that starts
// between two steps gets what is left on its links until the next step, and a flow that ends
// frees its rate at once. Whatever the approximation, no link ever carries more than its
// capacity: every rate given is checked (`CapacityExceededError`).
//
// Small messages (HAVE, ANNOUNCE, requests) take the one-way latency and no bandwidth.

/** A virtual clock and its event queue; time is in milliseconds. */
export class Simulation {
  now = 0
  events = 0
  readonly #heap: Array<{ t: number, seq: number, fn: () => void }> = []
  #seq = 0

  /** Runs `fn` at time `t` (now, if `t` is past). */
  at (t: number, fn: () => void): void {
    const heap = this.#heap
    const item = { t: Math.max(t, this.now), seq: this.#seq++, fn }
    heap.push(item)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(item, heap[parent])) break
      heap[i] = heap[parent]
      i = parent
    }
    heap[i] = item
  }

  after (ms: number, fn: () => void): void { this.at(this.now + ms, fn) }

  /** Calls `fn` every `ms` until the returned function is called. */
  every (ms: number, fn: () => void): () => void {
    let live = true
    const tick = (): void => {
      if (!live) return
      fn()
      if (live) this.after(ms, tick)
    }
    this.after(ms, tick)
    return () => { live = false }
  }

  get pending (): number { return this.#heap.length }

  #pop (): { t: number, fn: () => void } {
    const heap = this.#heap
    const top = heap[0]
    const last = heap.pop()
    if (last != null && heap.length > 0) {
      let i = 0
      while (true) {
        const l = 2 * i + 1
        if (l >= heap.length) break
        const r = l + 1
        const c = r < heap.length && before(heap[r], heap[l]) ? r : l
        if (!before(heap[c], last)) break
        heap[i] = heap[c]
        i = c
      }
      heap[i] = last
    }
    return top
  }

  /**
   * Runs events in time order until `done()` or time `limit`. Code awaiting promises (the download
   * sessions) runs between events: after each batch of events within `quantumMs` the loop yields
   * to the event loop, so every continuation they set off runs before virtual time moves on.
   */
  async run (done: () => boolean, limit: number, quantumMs = 0.05): Promise<void> {
    // What was started before the run schedules its first events from promise continuations.
    await new Promise(resolve => setImmediate(resolve))
    while (this.#heap.length > 0 && !done()) {
      const end = this.#heap[0].t + quantumMs
      if (this.#heap[0].t > limit) break
      while (this.#heap.length > 0 && this.#heap[0].t <= end) {
        const e = this.#pop()
        this.now = e.t
        this.events++
        e.fn()
      }
      await new Promise(resolve => setImmediate(resolve))
    }
  }
}

function before (a: { t: number, seq: number }, b: { t: number, seq: number }): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq)
}

export interface TopologyInit {
  /** Machines, the seed included. */
  hosts: number
  rackSize: number
  /** Each host's NIC, each way, bytes per ms. */
  hostRate: number
  /** Hosts' total rate ÷ the rack uplink's (each way). */
  oversubscription: number
  /** One-way latency inside a rack and across the core, ms. */
  rackLatencyMs: number
  coreLatencyMs: number
  /** How often rates are shared out again, ms. */
  stepMs: number
  /**
   * The most one flow from `src` to `dst` may carry, bytes per ms (default: no cap). Models a
   * connection that gets less than its fair share, as one of the seed's TCP flows often does in
   * the shaped swarm (its flows' congestion control, not the links).
   */
  flowCap?: (src: number, dst: number) => number
}

export class CapacityExceededError extends Error {
  static override readonly name = 'CapacityExceededError'
  constructor (link: number, load: number, capacity: number) {
    super(`link ${link} would carry ${load} bytes/ms, over its capacity of ${capacity}`)
    this.name = CapacityExceededError.name
  }
}

export interface Flow {
  readonly src: number
  readonly dst: number
  readonly bytes: number
  readonly links: readonly number[]
  remaining: number
  rate: number
  /** `TopologyInit.flowCap` for its hosts. */
  readonly cap: number
  /** When `remaining` was last brought up to date. */
  last: number
  /** Bumped whenever the rate changes, so an old completion event is ignored. */
  version: number
  done: boolean
  onDone: () => void
}

/** Relative slack for floating-point sums when checking capacities. */
const EPSILON = 1e-9

export class FlowNetwork {
  readonly sim: Simulation
  readonly init: TopologyInit
  readonly racks: number
  /** Per link: capacity (bytes/ms), the rates given now, the bytes carried so far. */
  readonly capacity: Float64Array
  readonly load: Float64Array
  readonly carried: Float64Array
  /** The most a link was ever given, as a share of its capacity (≤ 1). */
  peakUtilisation = 0
  readonly #flows = new Set<Flow>()
  /** `carried` and the time at the last step: what a link moved in between is checked against its capacity. */
  readonly #carriedAtStep: Float64Array
  #lastStep = 0
  readonly #count: Int32Array
  readonly #extra: Float64Array
  #stepping: (() => void) | undefined

  constructor (sim: Simulation, init: TopologyInit) {
    this.sim = sim
    this.init = init
    this.racks = Math.ceil(init.hosts / init.rackSize)
    const links = 2 * init.hosts + 2 * this.racks
    this.capacity = new Float64Array(links)
    this.load = new Float64Array(links)
    this.carried = new Float64Array(links)
    this.#count = new Int32Array(links)
    this.#extra = new Float64Array(links)
    this.#carriedAtStep = new Float64Array(links)
    this.capacity.fill(init.hostRate, 0, 2 * init.hosts)
    this.capacity.fill(init.hostRate * init.rackSize / init.oversubscription, 2 * init.hosts)
  }

  rackOf (host: number): number { return Math.floor(host / this.init.rackSize) }
  hostUp (host: number): number { return host }
  hostDown (host: number): number { return this.init.hosts + host }
  rackUp (rack: number): number { return 2 * this.init.hosts + rack }
  rackDown (rack: number): number { return 2 * this.init.hosts + this.racks + rack }

  latency (a: number, b: number): number {
    return this.rackOf(a) === this.rackOf(b) ? this.init.rackLatencyMs : this.init.coreLatencyMs
  }

  get active (): number { return this.#flows.size }

  /** Moves `bytes` from host `src` to host `dst`; `onDone` runs when the last byte arrived. */
  start (src: number, dst: number, bytes: number, onDone: () => void): Flow {
    const links = [this.hostUp(src), this.hostDown(dst)]
    const a = this.rackOf(src)
    const b = this.rackOf(dst)
    if (a !== b) links.push(this.rackUp(a), this.rackDown(b))
    const cap = this.init.flowCap?.(src, dst) ?? Infinity
    const flow: Flow = { src, dst, bytes, links, remaining: bytes, rate: 0, cap, last: this.sim.now, version: 0, done: false, onDone }
    this.#flows.add(flow)
    for (const l of links) this.#count[l]++
    // Until the next step: what its links have left.
    let rate = cap
    for (const l of links) rate = Math.min(rate, this.capacity[l] - this.load[l])
    this.#setRate(flow, Math.max(0, rate))
    this.#stepping ??= this.sim.every(this.init.stepMs, () => { this.#step() })
    return flow
  }

  /** Stops a flow (its request timed out); the bytes it carried stay counted. */
  cancel (flow: Flow): void {
    if (flow.done) return
    this.#advance(flow)
    this.#end(flow)
  }

  #advance (flow: Flow): void {
    const moved = Math.min(flow.remaining, flow.rate * (this.sim.now - flow.last))
    flow.last = this.sim.now
    if (moved <= 0) return
    flow.remaining -= moved
    for (const l of flow.links) this.carried[l] += moved
  }

  #setRate (flow: Flow, rate: number): void {
    for (const l of flow.links) {
      this.load[l] += rate - flow.rate
      const cap = this.capacity[l]
      if (this.load[l] > cap * (1 + EPSILON)) throw new CapacityExceededError(l, this.load[l], cap)
      const used = this.load[l] / cap
      if (used > this.peakUtilisation) this.peakUtilisation = used
    }
    flow.rate = rate
    flow.version++
    if (rate <= 0) return
    const finish = this.sim.now + flow.remaining / rate
    // Within this step the rate holds; later ends are found by the next step.
    if (finish <= this.sim.now + this.init.stepMs) {
      const version = flow.version
      this.sim.at(finish, () => {
        if (flow.done || flow.version !== version) return
        this.#advance(flow)
        this.#finish(flow)
      })
    }
  }

  #end (flow: Flow): void {
    flow.done = true
    this.#flows.delete(flow)
    for (const l of flow.links) {
      this.#count[l]--
      this.load[l] -= flow.rate
      if (this.#count[l] === 0) this.load[l] = 0
    }
    flow.rate = 0
    if (this.#flows.size === 0) {
      this.#stepping?.()
      this.#stepping = undefined
    }
  }

  #finish (flow: Flow): void {
    // The float rest of the bytes: counted, so every flow carries exactly its size.
    if (flow.remaining > 0) for (const l of flow.links) this.carried[l] += flow.remaining
    flow.remaining = 0
    this.#end(flow)
    flow.onDone()
  }

  /** Every flow is up to date at a step: no link moved more than its capacity allows since the last one. */
  #audit (): void {
    const elapsed = this.sim.now - this.#lastStep
    const { carried, capacity } = this
    const before = this.#carriedAtStep
    for (let l = 0; l < carried.length; l++) {
      const moved = carried[l] - before[l]
      if (moved > capacity[l] * elapsed * (1 + 1e-6) + 1e-6) throw new CapacityExceededError(l, moved / elapsed, capacity[l])
    }
    before.set(carried)
    this.#lastStep = this.sim.now
  }

  /** Shares the links out again among the flows running now. */
  #step (): void {
    const finished: Flow[] = []
    for (const flow of this.#flows) {
      this.#advance(flow)
      if (flow.remaining <= flow.bytes * EPSILON) finished.push(flow)
    }
    for (const flow of finished) this.#finish(flow)
    this.#audit()
    // After the finished ones: their connections may have started the next flows.
    const live = [...this.#flows]
    const { capacity, load } = this
    const count = this.#count
    const extra = this.#extra
    const rates = new Float64Array(live.length)
    for (let i = 0; i < live.length; i++) {
      let rate = live[i].cap
      for (const l of live[i].links) rate = Math.min(rate, capacity[l] / count[l])
      rates[i] = rate
    }
    for (let pass = 0; pass < 2; pass++) {
      load.fill(0)
      for (let i = 0; i < live.length; i++) for (const l of live[i].links) load[l] += rates[i]
      for (let l = 0; l < extra.length; l++) extra[l] = count[l] > 0 ? Math.max(0, capacity[l] - load[l]) / count[l] : 0
      for (let i = 0; i < live.length; i++) {
        let more = live[i].cap - rates[i]
        for (const l of live[i].links) more = Math.min(more, extra[l])
        rates[i] += more
      }
    }
    // The flows' old rates leave the links, then the new ones are given (and checked) one by one.
    load.fill(0)
    for (let i = 0; i < live.length; i++) {
      live[i].rate = 0
      this.#setRate(live[i], rates[i] * (1 - EPSILON))
    }
  }
}
