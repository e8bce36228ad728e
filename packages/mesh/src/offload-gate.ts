import { createHash } from 'node:crypto'
import { performance } from 'node:perf_hooks'

/** How the gate reads the time and this thread's CPU time, both in milliseconds (tests pass their own). */
export interface GateClock {
  now: () => number
  cpu: () => number
}

export interface OffloadGateInit {
  /** Share of the last window this thread would have been busy, hashing here, above which hashing goes to the worker. */
  threshold?: number
  windowMs?: number
  /** Milliseconds this thread takes to hash one byte (measured once on first use when not given). */
  msPerByte?: number
  clock?: GateClock
}

const systemClock: GateClock = {
  now: () => performance.now(),
  cpu: () => {
    const { user, system } = process.threadCpuUsage()
    return (user + system) / 1000
  }
}

/**
 * Whether the chunks received now are hashed on the store's worker (`Lease.sha256`) or here, on
 * the main thread, as they arrive. The worker is for a main thread that is the bottleneck (a
 * receiver at ~800 MiB/s spent 54 % of its profile in sha256, docs/benchmarks.md, issue 8);
 * otherwise hashing here costs less CPU: each piece is hashed while still in this core's cache
 * when it has just been decrypted, and no thread wakes per chunk (offloaded, a chunk cost
 * 0.1-0.5 ms more CPU in all, measured under load). So hashing moves to the worker while this
 * thread, counting the hashing it handed over as if done here, ran at least `threshold` of the
 * last window, and comes back once it did not. Its CPU time, not its event loop's utilization: on
 * a machine short of cores (the swarm bench: nine agents on two) a loop waiting for a core counts
 * as busy, when there is no core for a worker either.
 */
export class OffloadGate {
  readonly #threshold: number
  readonly #windowMs: number
  readonly #clock: GateClock
  #msPerByte: number | undefined
  #since: number
  #cpuAt: number
  #handedOverMs = 0
  #offload = false

  constructor (init: OffloadGateInit = {}) {
    this.#threshold = init.threshold ?? 0.8
    this.#windowMs = init.windowMs ?? 250
    this.#clock = init.clock ?? systemClock
    this.#msPerByte = init.msPerByte
    this.#since = this.#clock.now()
    this.#cpuAt = this.#clock.cpu()
  }

  /** Whether to hash the next `bytes` elsewhere. */
  offload (bytes: number): boolean {
    const now = this.#clock.now()
    if (now - this.#since >= this.#windowMs) {
      const cpu = this.#clock.cpu()
      this.#offload = (cpu - this.#cpuAt + this.#handedOverMs) / (now - this.#since) >= this.#threshold
      this.#since = now
      this.#cpuAt = cpu
      this.#handedOverMs = 0
    }
    if (this.#offload) this.#handedOverMs += bytes * (this.#msPerByte ??= hashMsPerByte())
    return this.#offload
  }
}

/** This machine's sha256 cost per byte on this thread: the fastest of a few 256 KiB hashes. */
function hashMsPerByte (): number {
  const sample = new Uint8Array(256 * 1024)
  let best = Infinity
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now()
    createHash('sha256').update(sample).digest()
    best = Math.min(best, performance.now() - t0)
  }
  return best / sample.byteLength
}
