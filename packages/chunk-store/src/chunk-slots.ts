import type { Lease } from '@peerglance/interface'
import { alignedChunks } from './aligned-chunks.ts'
import { letGo } from './young-gc.ts'

function noop (): void {}

interface Waiter {
  resolve: (lease: Lease) => void
  timer: NodeJS.Timeout
}

/**
 * How long every slot must have been back before the memory goes: a transfer hands slots back
 * many times a second, and an agent at rest held the pages its last transfer touched (16 MiB of
 * receive slots after a fetch, up to 16 of read slots after serving) for good, ~25 MB of RSS.
 * The agent's idle collector then frees it (young-gc.ts `letGo`).
 */
export const SLOTS_IDLE_MS = 5_000

/**
 * Page-aligned, chunk-sized buffers the store reuses: chunks from peers are received into them
 * (`FsChunkStore.lendBuffer`) and written with O_DIRECT from there, and chunk files are read into
 * them with O_DIRECT to be served (`readChunkLease`). Through the page cache a fetched chunk cost
 * ~3 kernel CPU-s per GiB, and a fresh 1 MiB buffer per chunk left garbage whose external bytes
 * started V8's full collections. A fixed number of slots in one shared memory (a worker verifies
 * received chunks in place, chunk-digests.ts; and V8 leaves it out of its external memory,
 * aligned-chunks.ts), made on first use and let go once all have been back for `idleMs`; the last
 * one handed back is lent first, so the pages in use stay few. Beyond them, and for lengths over
 * the slot size, a lease is a fresh buffer nobody reuses.
 */
export class ChunkSlots {
  readonly #size: number
  readonly #count: number
  readonly #idleMs: number
  /** Armed when the last slot comes back: lets the memory go if none moved since. */
  #idle: NodeJS.Timeout | undefined
  #free: Uint8Array[] | undefined
  #memory: ArrayBufferLike | undefined
  /** Who waits for a slot (`take`), first come first served. */
  readonly #waiters: Waiter[] = []
  /** When a slot was last lent or handed back (performance.now()). */
  #moved = 0
  /** Slots lent and not yet handed back, and the most at once. */
  lent = 0
  peak = 0
  /** Fresh buffers handed out instead (every slot out, or longer than a slot): garbage once released. */
  fresh = 0
  /** Takers that waited the whole `waitMs` for a slot (each a stall of the one who asked). */
  waitedOut = 0

  constructor (size: number, count: number, idleMs = SLOTS_IDLE_MS) {
    this.#size = size
    this.#count = count
    this.#idleMs = idleMs
  }

  /** Whether the slots' memory is held (made at the first lend, let go when idle). */
  get holding (): boolean {
    return this.#memory != null
  }

  /** `length` bytes in a slot, or in a fresh buffer when none is free. */
  lend (length: number): Lease {
    return (length <= this.#size ? this.#slot(length) : undefined) ?? this.#fresh(length)
  }

  /**
   * A whole slot, waiting up to `waitMs` for one to come back when all are out; then a fresh
   * buffer. Holders that keep their slots (a peer that stops reading what it asked for) must cost
   * memory, as they would without slots, but not stall the others: the wait is bounded, and once
   * no slot has moved for `waitMs`, takers do not wait at all.
   */
  async take (waitMs: number): Promise<Lease> {
    const slot = this.#slot(this.#size)
    if (slot != null) return slot
    if (this.#count === 0 || performance.now() - this.#moved > waitMs) return this.#fresh(this.#size)
    return await new Promise(resolve => {
      const waiter: Waiter = {
        resolve,
        timer: setTimeout(() => {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
          this.waitedOut++
          resolve(this.#fresh(this.#size))
        }, waitMs)
      }
      this.#waiters.push(waiter)
    })
  }

  /** Whether `bytes` lie in a slot (and so start on a page boundary). */
  owns (bytes: Uint8Array): boolean {
    return this.#memory != null && bytes.buffer === this.#memory
  }

  #slot (length: number): Lease | undefined {
    if (this.#count === 0) return undefined
    if (this.#free == null) {
      this.#free = alignedChunks(this.#size, this.#count).reverse()
      this.#memory = this.#free[0].buffer
    }
    const slot = this.#free.pop()
    return slot == null ? undefined : this.#lease(slot, length)
  }

  /** Lets the memory go once no slot has moved for `idleMs` and none is out; V8 frees it in its next full collection. */
  #armIdle (ms: number): void {
    if (this.#idle != null) return
    this.#idle = setTimeout(() => {
      this.#idle = undefined
      if (this.lent > 0) return
      const left = this.#idleMs - (performance.now() - this.#moved)
      if (left > 0) {
        this.#armIdle(left)
        return
      }
      letGo(this.#memory?.byteLength ?? 0)
      this.#free = undefined
      this.#memory = undefined
    }, ms)
    this.#idle.unref()
  }

  #fresh (length: number): Lease {
    this.fresh++
    return { bytes: Buffer.allocUnsafe(length), release: noop }
  }

  #lease (slot: Uint8Array, length: number): Lease {
    if (++this.lent > this.peak) this.peak = this.lent
    this.#moved = performance.now()
    let released = false
    return {
      bytes: slot.subarray(0, length),
      release: () => {
        if (released) return
        released = true
        this.lent--
        this.#moved = performance.now()
        const waiter = this.#waiters.shift()
        if (waiter == null) {
          this.#free?.push(slot)
          if (this.lent === 0) this.#armIdle(this.#idleMs)
          return
        }
        clearTimeout(waiter.timer)
        waiter.resolve(this.#lease(slot, this.#size))
      }
    }
  }
}
