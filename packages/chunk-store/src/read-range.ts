import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { AbortedError, ChunkIntegrityError, ChunkUnavailableError, isChunkCid, RangeNotSatisfiableError } from '@peerglance/interface'
import type { Lease, Manifest } from '@peerglance/interface'
import type { ChunkFiles } from './chunk-files.ts'

function noop (): void {}

/** Buffers that sealed chunk files are read into before decryption, reused across reads. */
const sealedBuffers: Buffer[] = []
const MAX_SEALED_BUFFERS = 8

/**
 * Yields bytes [start, end] (inclusive) of the image, one buffer per chunk touched. The next
 * chunk is read while the consumer handles the current one. Buffers come from a pool of three
 * chunk-sized buffers owned by this read: a yielded buffer stays valid until the consumer asks for
 * the one after next, so a consumer that is done with each buffer when it pulls the next (a socket
 * writer that waits for the write to complete) streams any size with no garbage at all.
 * Chunk files are not hashed again: they were verified before they got their names.
 */
export async function * readRange (files: ChunkFiles, manifest: Manifest, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const { size, chunkSize, cids } = manifest
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`manifest chunk size ${chunkSize} is not a positive integer`)
  if (end < start) return
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end >= size) {
    throw new RangeNotSatisfiableError(`Requested range ${start}-${end} is not within the image's ${size} bytes.`)
  }

  const first = Math.floor(start / chunkSize)
  const last = Math.floor(end / chunkSize)
  const pool = Array.from({ length: Math.min(3, last - first + 1) }, () => Buffer.allocUnsafeSlow(Math.min(chunkSize, end - start + 1)))
  const fetch = (index: number): Promise<Buffer> => {
    const base = index * chunkSize
    const length = Math.min(chunkSize, size - base)
    const from = Math.max(start - base, 0)
    const to = Math.min(end - base, length - 1)
    const buffer = pool[(index - first) % pool.length]
    const read = readSlice(files, cids[index], from, buffer.subarray(0, to - from + 1))
    // Awaited later; until then a failure must not count as unhandled, nor if the consumer stops early.
    read.catch(noop)
    return read
  }

  let next = fetch(first)
  for (let index = first; index <= last; index++) {
    if (signal?.aborted === true) throw new AbortedError('The download was aborted.', { cause: signal.reason })
    const current = next
    if (index < last) next = fetch(index + 1)
    yield await current
  }
}

/** One read per chunk into the given buffer: the fastest pattern measured (REPORT.md section 6). */
async function readSlice (files: ChunkFiles, cid: string | undefined, position: number, buffer: Buffer): Promise<Buffer> {
  if (!isChunkCid(cid)) throw new ChunkUnavailableError(`The manifest names no valid chunk here (${String(cid)}).`)
  if (files.sealer != null) {
    // The decrypted chunk is a fresh buffer already: hand out a view of it, no copy into the pool.
    const chunk = await readChunkFile(files, cid)
    if (position + buffer.byteLength > chunk.byteLength) throw new ChunkUnavailableError(`Chunk ${cid} is shorter than the manifest says.`)
    return chunk.subarray(position, position + buffer.byteLength)
  }
  return await withChunkFile(files, cid, async handle => await fill(handle, buffer, position, cid))
}

/** A whole chunk file in one buffer of its exact size. */
export async function readChunkFile (files: ChunkFiles, cid: string): Promise<Buffer> {
  if (!isChunkCid(cid)) throw new ChunkUnavailableError(`There is no chunk named ${String(cid)}.`)
  const { sealer } = files
  if (sealer == null) {
    return await withChunkFile(files, cid, async handle => {
      const { size } = await handle.stat()
      return await fill(handle, Buffer.allocUnsafe(size), 0, cid)
    })
  }
  // The sealed bytes are read into a pooled buffer: only the decrypted chunk is new memory.
  const chunk = await withChunkFile(files, cid, async handle => {
    const { size } = await handle.stat()
    let sealed = sealedBuffers.pop()
    if (sealed == null || sealed.byteLength < size) sealed = Buffer.allocUnsafeSlow(size)
    try {
      return sealer.open(cid, await fill(handle, sealed.subarray(0, size), 0, cid))
    } finally {
      if (sealedBuffers.length < MAX_SEALED_BUFFERS) sealedBuffers.push(sealed)
    }
  })
  if (chunk != null) return chunk
  // Changed on disk since it was sealed: never served; dropped, so that it is fetched again.
  await files.drop(cid)
  throw new ChunkUnavailableError(`Chunk ${cid} failed its integrity check on disk and was dropped.`, { cause: new ChunkIntegrityError(`chunk file ${cid} does not open with the chunk key`) })
}

/**
 * Buffers of leased reads, a few per store chunk size, each one byte longer than the chunk size
 * (see leaseChunkFile). One pool for every length up to the chunk size: pooled per length, each
 * image's odd-sized last chunk kept a buffer of its own for good.
 */
const leasedBuffers = new Map<number, Buffer[]>()
const MAX_LEASED_PER_SIZE = 16

/**
 * A whole chunk file in a pooled buffer, handed back by `release` (readChunkFile's fresh 1 MiB
 * buffer per chunk served was 16 % of a serving agent's main thread, in the garbage collector).
 * One read says the length, so no fstat: the buffer is a byte longer than any chunk of this store,
 * and a regular file reads short only at its end. A longer file (a chunk of an image cut with
 * larger chunks) gets a buffer of its own. Sealed chunks are decrypted into a fresh buffer as in
 * readChunkFile.
 */
export async function leaseChunkFile (files: ChunkFiles, cid: string, chunkSize: number): Promise<Lease> {
  if (!isChunkCid(cid)) throw new ChunkUnavailableError(`There is no chunk named ${String(cid)}.`)
  if (files.sealer != null) return { bytes: await readChunkFile(files, cid), release: noop }
  let pool = leasedBuffers.get(chunkSize)
  if (pool == null) leasedBuffers.set(chunkSize, pool = [])
  const buffer = pool.pop() ?? Buffer.allocUnsafeSlow(chunkSize + 1)
  const giveBack = (): void => { if (pool.length < MAX_LEASED_PER_SIZE) pool.push(buffer) }
  let lent = false
  try {
    return await withChunkFile(files, cid, async handle => {
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, 0)
      if (bytesRead > chunkSize) {
        const { size } = await handle.stat()
        return { bytes: await fill(handle, Buffer.allocUnsafeSlow(size), 0, cid), release: noop }
      }
      lent = true
      let released = false
      return {
        bytes: buffer.subarray(0, bytesRead),
        release () {
          if (released) return
          released = true
          giveBack()
        }
      }
    })
  } finally {
    if (!lent) giveBack()
  }
}

async function withChunkFile<T> (files: ChunkFiles, cid: string, use: (handle: FileHandle) => Promise<T>): Promise<T> {
  let handle
  try {
    handle = await open(files.path(cid), 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      files.lost(cid)
      throw new ChunkUnavailableError(`Chunk ${cid} is not available.`, { cause: err })
    }
    throw err
  }
  try {
    return await use(handle)
  } finally {
    await handle.close()
  }
}

async function fill (handle: FileHandle, buffer: Buffer, position: number, cid: string): Promise<Buffer> {
  const length = buffer.byteLength
  for (let filled = 0; filled < length;) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled)
    if (bytesRead === 0) throw new ChunkUnavailableError(`Chunk ${cid} is shorter than the manifest says.`)
    filled += bytesRead
  }
  return buffer
}
