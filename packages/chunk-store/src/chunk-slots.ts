import type { Lease } from '@peerglance/interface'
import { alignedChunks } from './aligned-chunks.ts'

function noop (): void {}

/**
 * Page-aligned buffers that chunks from peers are received into (`FsChunkStore.lendBuffer`), so
 * that their chunk files are written with O_DIRECT straight from them (through the page cache a
 * fetched chunk cost ~3 kernel CPU-s per GiB, ~1 around it) and no 1 MiB buffer per chunk is left
 * to the garbage collector. A fixed number of chunk-sized slots in one memory, made on first use;
 * the last one handed back is lent first, so the pages in use stay few. Beyond them, and for
 * lengths over the chunk size, a lease is a fresh buffer nobody reuses.
 */
export class ChunkSlots {
  readonly #size: number
  readonly #count: number
  #free: Uint8Array[] | undefined
  #memory: ArrayBufferLike | undefined
  /** Slots lent and not yet handed back. */
  lent = 0

  constructor (size: number, count: number) {
    this.#size = size
    this.#count = count
  }

  lend (length: number): Lease {
    if (length <= this.#size && this.#count > 0) {
      if (this.#free == null) {
        // Not shared: no worker reads them, and copying each piece received into shared memory was slower.
        this.#free = alignedChunks(this.#size, this.#count, { shared: false }).reverse()
        this.#memory = this.#free[0].buffer
      }
      const slot = this.#free.pop()
      if (slot != null) return this.#lease(slot, length)
    }
    return { bytes: Buffer.allocUnsafe(length), release: noop }
  }

  /** Whether `bytes` lie in a slot (and so start on a page boundary). */
  owns (bytes: Uint8Array): boolean {
    return this.#memory != null && bytes.buffer === this.#memory
  }

  #lease (slot: Uint8Array, length: number): Lease {
    this.lent++
    let released = false
    return {
      bytes: slot.subarray(0, length),
      release: () => {
        if (released) return
        released = true
        this.lent--
        this.#free?.push(slot)
      }
    }
  }
}
