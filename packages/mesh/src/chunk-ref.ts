import type { Lease } from '@peerglance/interface'

/**
 * A fetched chunk's verified bytes, held by several at once: the write to the store and each
 * reader streaming them to a client. They sit in a buffer the store lent (`lendBuffer`), which
 * it reuses for another chunk once the last holder let go. Each holder calls `release` once
 * (later calls do nothing); `hold` makes one more holder. Reading `bytes` through a released
 * reference throws rather than show what the buffer holds by then.
 */
export interface ChunkRef {
  readonly bytes: Uint8Array
  hold: () => ChunkRef
  release: () => void
}

function noop (): void {}

/** Bytes nobody reuses: holding and releasing them changes nothing. */
export function plainRef (bytes: Uint8Array): ChunkRef {
  const ref: ChunkRef = { bytes, hold: () => ref, release: noop }
  return ref
}

/**
 * Shares a lease among `holders` takers: each call of the returned function hands out one of
 * them (one per fetch that waited for the chunk); the lease is released when every reference is.
 */
export function shareLease (lease: Lease, holders: number): () => ChunkRef {
  const shared = { lease, refs: holders, untaken: holders }
  if (holders <= 0) lease.release()
  return () => {
    if (shared.untaken <= 0) throw new Error('chunk taken more times than it was asked for')
    shared.untaken--
    return refTo(shared)
  }
}

/** A reference to a lease whose buffer is reused once it is released (`Lease.release` is idempotent). */
export function leaseRef (lease: Lease): ChunkRef {
  return refTo({ lease, refs: 1 })
}

function refTo (shared: { lease: Lease, refs: number }): ChunkRef {
  let released = false
  return {
    get bytes () {
      if (released) throw new Error('chunk bytes read after their release')
      return shared.lease.bytes
    },
    hold () {
      if (released) throw new Error('chunk held after its release')
      shared.refs++
      return refTo(shared)
    },
    release () {
      if (released) return
      released = true
      if (--shared.refs === 0) shared.lease.release()
    }
  }
}
