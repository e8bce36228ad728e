import { constants } from 'node:fs'
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { AbortedError, ChunkIntegrityError, ChunkUnavailableError, isChunkCid, RangeNotSatisfiableError } from '@peerglance/interface'
import type { Lease, Manifest } from '@peerglance/interface'
import type { ChunkFiles } from './chunk-files.ts'
import type { ChunkSlots } from './chunk-slots.ts'

function noop (): void {}

/**
 * Yields bytes [start, end] (inclusive) of the image, one buffer per chunk touched. The next
 * chunk is read while the consumer handles the current one. Buffers come from a pool of three
 * chunk-sized buffers owned by this read: a yielded buffer stays valid until the consumer asks for
 * the one after next, so a consumer that is done with each buffer when it pulls the next (a socket
 * writer that waits for the write to complete) streams any size with no garbage at all.
 * Chunk files are not hashed again: they were verified before they got their names.
 */
export async function * readRange (files: ChunkFiles, slots: ChunkSlots, manifest: Manifest, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
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
    const read = readSlice(files, slots, cids[index], from, buffer.subarray(0, to - from + 1))
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
async function readSlice (files: ChunkFiles, slots: ChunkSlots, cid: string | undefined, position: number, buffer: Buffer): Promise<Buffer> {
  if (!isChunkCid(cid)) throw new ChunkUnavailableError(`The manifest names no valid chunk here (${String(cid)}).`)
  if (files.sealer != null) {
    // The decrypted chunk is a fresh buffer already: hand out a view of it, no copy into the pool.
    const chunk = await readChunkFile(files, slots, cid)
    if (position + buffer.byteLength > chunk.byteLength) throw new ChunkUnavailableError(`Chunk ${cid} is shorter than the manifest says.`)
    return chunk.subarray(position, position + buffer.byteLength)
  }
  return await withChunkFile(files, cid, false, async handle => await fill(handle, buffer, position, cid))
}

/** A whole chunk file in a buffer of its own (a copy of a leased read). */
export async function readChunkFile (files: ChunkFiles, slots: ChunkSlots, cid: string): Promise<Buffer> {
  const lease = await leaseChunkFile(files, slots, cid)
  const { bytes } = lease
  // Not in a slot: a decrypted chunk, or a buffer nobody else holds.
  if (!slots.owns(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  try {
    return Buffer.from(bytes)
  } finally {
    lease.release()
  }
}

/**
 * How long a leased read waits for a slot when all are out (`ChunkSlots.take`). Slots come back
 * as sockets take the bytes: in the shaped swarm (200 Mbit/s, ~25 inbound bulk channels per
 * agent) all 16 were out at times and came back after up to ~1 s. Slots held longer (a peer that
 * does not read) must not stall the others.
 */
const SLOT_WAIT_MS = 2_000

/**
 * A whole chunk file in a read slot (chunk-slots.ts), handed back by `release`: serving peers
 * allocates nothing per chunk (a fresh 1 MiB buffer per chunk served was 16 % of a serving
 * agent's main thread, in the garbage collector, and with a pool of buffers kept per size, the
 * ones beyond it still started full collections in the swarm). The slot is page-aligned and
 * whole blocks long, so the file is read with O_DIRECT: chunk files are written around the page
 * cache, and reading them through it cost the kernel a readahead and a copy per chunk (a
 * hypervisor's page cache belongs to its VMs). A slot is longer than any chunk of this store, so
 * one read says the length: no fstat; a file that fills it (a chunk of an image cut with larger
 * chunks) is read again into a buffer of its own. Sealed chunks are decrypted into a fresh buffer.
 */
export async function leaseChunkFile (files: ChunkFiles, slots: ChunkSlots, cid: string): Promise<Lease> {
  if (!isChunkCid(cid)) throw new ChunkUnavailableError(`There is no chunk named ${String(cid)}.`)
  const lease = await slots.take(SLOT_WAIT_MS)
  const slot = lease.bytes
  let bytes: Uint8Array
  try {
    bytes = await readWhole(files, cid, slot, slots.owns(slot))
  } catch (err) {
    lease.release()
    throw err
  }
  if (bytes.buffer === slot.buffer && files.sealer == null) return { bytes, release: lease.release }
  let chunk: Uint8Array | undefined = bytes
  try {
    if (files.sealer != null) chunk = files.sealer.open(cid, bytes)
  } finally {
    lease.release()
  }
  if (chunk != null) return { bytes: chunk, release: noop }
  // Changed on disk since it was sealed: never served; dropped, so that it is fetched again.
  await files.drop(cid)
  throw new ChunkUnavailableError(`Chunk ${cid} failed its integrity check on disk and was dropped.`, { cause: new ChunkIntegrityError(`chunk file ${cid} does not open with the chunk key`) })
}

/** The file in `slot` (a view of it), or in a buffer of its own when the file fills the slot. */
async function readWhole (files: ChunkFiles, cid: string, slot: Uint8Array, aligned: boolean): Promise<Uint8Array> {
  const bytesRead = await withChunkFile(files, cid, aligned, async handle => (await handle.read(slot, 0, slot.byteLength, 0)).bytesRead)
  if (bytesRead < slot.byteLength) return slot.subarray(0, bytesRead)
  return await withChunkFile(files, cid, false, async handle => await fill(handle, Buffer.allocUnsafeSlow((await handle.stat()).size), 0, cid))
}

/**
 * Opens the chunk's file for `use`, with O_DIRECT when `direct` (the caller reads whole blocks
 * into page-aligned memory) and the file system allows it; a file system that refuses (EINVAL:
 * tmpfs, some FUSE) is read through the page cache from then on.
 */
async function withChunkFile<T> (files: ChunkFiles, cid: string, direct: boolean, use: (handle: FileHandle) => Promise<T>): Promise<T> {
  direct &&= files.readsDirect
  let handle
  try {
    handle = await open(files.path(cid), direct ? constants.O_RDONLY | constants.O_DIRECT : constants.O_RDONLY)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') {
      files.lost(cid)
      throw new ChunkUnavailableError(`Chunk ${cid} is not available.`, { cause: err })
    }
    if (direct && code === 'EINVAL') {
      files.readsDirect = false
      return await withChunkFile(files, cid, false, use)
    }
    throw err
  }
  try {
    const result = await use(handle)
    if (direct) files.directReads++
    return result
  } catch (err) {
    if (!direct || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
    files.readsDirect = false
  } finally {
    await handle.close()
  }
  return await withChunkFile(files, cid, false, use)
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
