import type { Lease } from '@peerglance/interface'
import { alignedChunks } from './aligned-chunks.ts'
import { letGo } from './young-gc.ts'

function noop (): void {}

interface Waiter {
  resolve: (lease: Lease) => void
  timer: NodeJS.Timeout
}

/** A slot handed back with a chunk's verified bytes still in it (`keep`), until it is lent again. */
interface Kept {
  slot: number
  length: number
  /** Leases of these bytes out now (`lendKept`): the slot is not lent again before they are back. */
  holders: number
  /** Forgotten while held: the slot is free once the last holder hands it back. */
  forgotten: boolean
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
 *
 * A slot whose bytes were stored as a chunk someone will soon ask for (`keep`) keeps them once
 * handed back, until the slot is needed again, and `lendKept` lends them out again: in the swarm
 * a downloader's peers ask for a chunk ~250 ms (median) after it arrived, and reading it back
 * from its file was three thread-pool round trips and a device read each time. Kept slots are
 * lent last, the least recently used first, so at most all slots are resident, as when all are
 * in use at once.
 */
export class ChunkSlots {
  readonly #size: number
  readonly #count: number
  readonly #idleMs: number
  /** Armed when the last slot comes back: lets the memory go if none moved since. */
  #idle: NodeJS.Timeout | undefined
  #views: Uint8Array[] | undefined
  #memory: ArrayBufferLike | undefined
  /** Slots handed back holding nothing anyone wants, the last handed back on top. */
  #free: number[] = []
  /** Slots never lent from this memory (their pages untouched), the first on top. */
  #untouched: number[] = []
  /** Slots holding a kept chunk, by CID, the least recently used first (Map order). */
  readonly #kept = new Map<string, Kept>()
  /** Lent slots to be kept under a CID once handed back, by slot. */
  readonly #toKeep = new Map<number, { cid: string, length: number }>()
  /** Whether each slot is lent now (by `lend` or `take`). */
  #out = new Uint8Array(0)
  /** Bytes from one slot's start to the next's. */
  #stride = 0
  /** Who waits for a slot (`take`), first come first served. */
  readonly #waiters: Waiter[] = []
  /** When a slot was last lent or handed back (performance.now()). */
  #moved = 0
  /** Slots lent and not yet handed back (kept chunks lent again included), and the most at once. */
  lent = 0
  peak = 0
  /** Fresh buffers handed out instead (every slot out, or longer than a slot): garbage once released. */
  fresh = 0
  /** Takers that waited the whole `waitMs` for a slot (each a stall of the one who asked). */
  waitedOut = 0
  /** Kept chunks lent out again (`lendKept`), and how many of those leases are out now. */
  keptLent = 0
  #keptOut = 0

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

  /**
   * `bytes`, lent from a slot (`lend`) and now stored as chunk `cid` (verified), stay in it once
   * the lease is handed back, for `lendKept`. The caller must not change them after.
   */
  keep (bytes: Uint8Array, cid: string): void {
    if (!this.owns(bytes) || bytes.byteOffset % this.#stride !== 0) return
    const slot = bytes.byteOffset / this.#stride
    if (this.#out[slot] === 1) this.#toKeep.set(slot, { cid, length: bytes.byteLength })
  }

  /**
   * The bytes kept for `cid` in a lease of their own, or undefined when their slot went to another
   * chunk, or when half the slots are out this way already: peers that stop reading what they
   * asked for must not take every slot chunks are received into (the read from the file they get
   * instead waits for a read slot, as before).
   */
  lendKept (cid: string): Lease | undefined {
    const kept = this.#kept.get(cid)
    if (kept == null || this.#keptOut >= this.#count / 2) return undefined
    // Used now: the last to be lent for another chunk.
    this.#kept.delete(cid)
    this.#kept.set(cid, kept)
    kept.holders++
    this.keptLent++
    this.#keptOut++
    if (++this.lent > this.peak) this.peak = this.lent
    this.#moved = performance.now()
    let released = false
    return {
      bytes: this.#views![kept.slot].subarray(0, kept.length),
      release: () => {
        if (released) return
        released = true
        this.#moved = performance.now()
        this.#keptOut--
        if (--kept.holders === 0 && kept.forgotten) this.#handBack(kept.slot)
        else this.#back()
      }
    }
  }

  /** The chunk is gone from the store: its kept bytes are not lent again. */
  forget (cid: string): void {
    const kept = this.#kept.get(cid)
    if (kept != null) {
      this.#kept.delete(cid)
      if (kept.holders === 0) this.#free.push(kept.slot)
      else kept.forgotten = true
    }
    for (const [slot, to] of this.#toKeep) if (to.cid === cid) this.#toKeep.delete(slot)
  }

  #slot (length: number): Lease | undefined {
    if (this.#count === 0) return undefined
    if (this.#views == null) {
      this.#views = alignedChunks(this.#size, this.#count)
      this.#memory = this.#views[0].buffer
      this.#stride = this.#count > 1 ? this.#views[1].byteOffset : this.#size
      this.#out = new Uint8Array(this.#count)
      this.#free = []
      this.#untouched = Array.from({ length: this.#count }, (_, i) => this.#count - 1 - i)
    }
    const slot = this.#free.pop() ?? this.#untouched.pop() ?? this.#evictKept()
    return slot == null ? undefined : this.#lease(slot, length)
  }

  /** The least recently used kept slot nobody holds, now empty. */
  #evictKept (): number | undefined {
    for (const [cid, kept] of this.#kept) {
      if (kept.holders > 0) continue
      this.#kept.delete(cid)
      return kept.slot
    }
    return undefined
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
      this.#views = undefined
      this.#memory = undefined
      this.#kept.clear()
    }, ms)
    this.#idle.unref()
  }

  #fresh (length: number): Lease {
    this.fresh++
    return { bytes: Buffer.allocUnsafe(length), release: noop }
  }

  #lease (slot: number, length: number): Lease {
    if (++this.lent > this.peak) this.peak = this.lent
    this.#moved = performance.now()
    this.#out[slot] = 1
    let released = false
    return {
      bytes: this.#views![slot].subarray(0, length),
      release: () => {
        if (released) return
        released = true
        this.#moved = performance.now()
        this.#out[slot] = 0
        const to = this.#toKeep.get(slot)
        this.#toKeep.delete(slot)
        if (to == null || this.#waiters.length > 0) {
          this.#handBack(slot)
          return
        }
        this.forget(to.cid)
        this.#kept.set(to.cid, { slot, length: to.length, holders: 0, forgotten: false })
        this.#back()
      }
    }
  }

  /** An empty slot back: to the first waiter, else on top of the free ones. */
  #handBack (slot: number): void {
    const waiter = this.#waiters.shift()
    if (waiter == null) {
      this.#free.push(slot)
      this.#back()
      return
    }
    this.lent--
    clearTimeout(waiter.timer)
    waiter.resolve(this.#lease(slot, this.#size))
  }

  /** A lease came back: with none out, the idle clock starts. */
  #back (): void {
    if (--this.lent === 0) this.#armIdle(this.#idleMs)
  }
}
