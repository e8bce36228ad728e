import type { Lease } from '@peerglance/interface'
import { alignedChunks } from './aligned-chunks.ts'

function noop (): void {}

interface Waiter {
  resolve: (lease: Lease) => void
  timer: NodeJS.Timeout
}

/**
 * Page-aligned, chunk-sized buffers the store reuses: chunks from peers are received into them
 * (`FsChunkStore.lendBuffer`) and written with O_DIRECT from there, and chunk files are read into
 * them with O_DIRECT to be served (`readChunkLease`). Through the page cache a fetched chunk cost
 * ~3 kernel CPU-s per GiB, and a fresh 1 MiB buffer per chunk left garbage whose external bytes
 * started V8's full collections. A fixed number of slots in one shared memory (a worker verifies
 * received chunks in place, chunk-digests.ts; and V8 leaves it out of its external memory,
 * aligned-chunks.ts), made on first use; the last one handed back is lent first, so the pages in
 * use stay few. Beyond them, and for lengths over the slot size, a lease is a fresh buffer nobody
 * reuses.
 */
export class ChunkSlots {
  readonly #size: number
  readonly #count: number
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

  constructor (size: number, count: number) {
    this.#size = size
    this.#count = count
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
          return
        }
        clearTimeout(waiter.timer)
        waiter.resolve(this.#lease(slot, this.#size))
      }
    }
  }
}
