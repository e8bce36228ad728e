import { AbortedError, ChunkIntegrityError, cidOf, isChunkCid, ShuttingDownError, silentLogger } from '@peerglance/interface'
import type { AbortOptions, ChunkBlocks, ChunkStore, IngestOptions, IngestResult, Lease, Logger, Manifest, PutChunkOptions, Startable } from '@peerglance/interface'
import { ChunkDigests } from './chunk-digests.ts'
import { ChunkFiles, DIRECT_ALIGNMENT } from './chunk-files.ts'
import { ChunkSealer, checkSealing } from './chunk-sealer.ts'
import { ChunkSlots } from './chunk-slots.ts'
import { DEFAULT_CHUNK_SIZE, DEFAULT_WRITE_CONCURRENCY, READ_SLOTS_BYTES, RECEIVE_SLOTS_BYTES } from './constants.ts'
import { ImageHasherPool } from './image-hasher-pool.ts'
import { Ingest } from './ingest.ts'
import { Pins } from './pins.ts'
import { received } from './young-gc.ts'
import { leaseChunkFile, readChunkFile, readRange } from './read-range.ts'

export interface FsChunkStoreInit {
  /** Holds `chunks/` (final files) and `staging/` (files being written). */
  dir: string
  /** Bytes per chunk for new uploads; reads follow each manifest's own chunk size. */
  chunkSize?: number
  /** Chunk files written (and fdatasync'ed) at once per upload. */
  writeConcurrency?: number
  /** 32-byte key (raw or 64 hex digits): chunk files are sealed with AES-256-GCM (chunk-sealer.ts). */
  encryptionKeyFile?: string
  /** Chunk-sized buffers lent to receive chunks from peers into (chunk-slots.ts); default 24 MiB of them, at least 4. */
  receiveSlots?: number
  /** Buffers chunk files are read into to be served (`readChunkLease`); default 16 MiB of them, at least 4. */
  readSlots?: number
  logger?: Logger
}

type Status = 'stopped' | 'started' | 'stopping'

function noop (): void {}

/** Content-addressed chunk files on the local file system. */
export class FsChunkStore implements ChunkStore, ChunkBlocks, Startable {
  readonly [Symbol.toStringTag] = '@peerglance/chunk-store'
  readonly chunkSize: number
  readonly #writeConcurrency: number
  readonly #log: Logger
  readonly #pins = new Pins()
  readonly #files: ChunkFiles
  readonly #dir: string
  readonly #keyFile: string | undefined
  readonly #hashers = new ImageHasherPool()
  readonly #digests = new ChunkDigests()
  readonly #slots: ChunkSlots
  readonly #reads: ChunkSlots
  readonly #ingests = new Set<Promise<void>>()
  #shutdown = new AbortController()
  #status: Status = 'stopped'
  #lifecycle: Promise<void> = Promise.resolve()

  constructor (init: FsChunkStoreInit) {
    const { dir, chunkSize = DEFAULT_CHUNK_SIZE, writeConcurrency = DEFAULT_WRITE_CONCURRENCY } = init
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`chunkSize must be a positive integer, not ${chunkSize}`)
    if (!Number.isSafeInteger(writeConcurrency) || writeConcurrency <= 0) throw new RangeError(`writeConcurrency must be a positive integer, not ${writeConcurrency}`)
    this.chunkSize = chunkSize
    this.#writeConcurrency = writeConcurrency
    this.#log = init.logger ?? silentLogger
    this.#files = new ChunkFiles(dir, this.#pins)
    // Shared memory (chunk-slots.ts), so that a worker verifies the chunks received in place (`Lease.sha256`):
    // copying each piece into it costs ~0.03 CPU-s per GiB more than into a plain buffer.
    this.#slots = new ChunkSlots(chunkSize, init.receiveSlots ?? Math.max(4, Math.floor(RECEIVE_SLOTS_BYTES / chunkSize)))
    // Whole blocks for O_DIRECT, and a block more than any chunk, so that a read coming back short says the file is whole.
    this.#reads = new ChunkSlots(Math.ceil(chunkSize / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT + DIRECT_ALIGNMENT, init.readSlots ?? Math.max(4, Math.floor(READ_SLOTS_BYTES / chunkSize)))
    this.#files.onDrop = cid => { this.#log.warn({ cid }, 'a chunk file changed on disk: dropped, it will be fetched again') }
    this.#dir = dir
    this.#keyFile = init.encryptionKeyFile == null || init.encryptionKeyFile === '' ? undefined : init.encryptionKeyFile
  }

  /** Creates the directories and deletes what a crash left in staging. */
  async start (): Promise<void> {
    await this.#serially(async () => {
      if (this.#status === 'started') return
      const swept = await this.#files.prepare()
      this.#files.sealer = this.#keyFile == null ? undefined : await ChunkSealer.fromFile(this.#keyFile)
      await checkSealing(this.#dir, this.#files.sealer)
      if (swept > 0) this.#log.info({ files: swept }, 'swept staging leftovers')
      if (this.#files.moved > 0) this.#log.info({ files: this.#files.moved }, 'moved chunk files into the 32-directory layout')
      this.#shutdown = new AbortController()
      this.#status = 'started'
    })
  }

  /** Ends in-flight uploads with ShuttingDownError, waits for their cleanup, and ends the hash workers (a chunk digest asked later starts its worker again). */
  async stop (): Promise<void> {
    await this.#serially(async () => {
      if (this.#status !== 'started') return
      this.#status = 'stopping'
      this.#shutdown.abort()
      await Promise.all(this.#ingests)
      await this.#hashers.close()
      await this.#digests.close()
      this.#status = 'stopped'
    })
  }

  async has (cid: string): Promise<boolean> {
    return await this.#files.has(cid)
  }

  /** Bumped whenever a chunk is added or deleted: what was derived from `has` still holds while it stays. */
  get generation (): number {
    return this.#files.generation
  }

  /** Bytes of chunk files on disk, as of the last write or delete (counted when the store starts). */
  get bytesStored (): number {
    return this.#files.bytes
  }

  async ingest (source: AsyncIterable<Uint8Array>, opts: IngestOptions): Promise<IngestResult> {
    if (this.#status !== 'started') throw new ShuttingDownError('The image store is not running.')
    const ingest = new Ingest({
      files: this.#files,
      pins: this.#pins,
      hashers: this.#hashers,
      chunkSize: this.chunkSize,
      writeConcurrency: this.#writeConcurrency,
      log: this.#log,
      shutdown: this.#shutdown.signal
    }, opts)
    const result = ingest.run(source)
    const settled = result.then(noop, noop)
    this.#ingests.add(settled)
    try {
      return await result
    } finally {
      this.#ingests.delete(settled)
    }
  }

  async * read (manifest: Manifest, start: number, end: number, opts: AbortOptions = {}): AsyncGenerator<Uint8Array> {
    yield * readRange(this.#files, this.#reads, manifest, start, end, opts.signal)
  }

  /** One whole chunk, as stored (it was verified before it got its name); ChunkUnavailableError when absent. */
  async readChunk (cid: string, opts: AbortOptions = {}): Promise<Uint8Array> {
    if (opts.signal?.aborted === true) throw new AbortedError('The chunk read was aborted.', { cause: opts.signal.reason })
    return await readChunkFile(this.#files, this.#reads, cid)
  }

  async readChunkLease (cid: string): Promise<Lease> {
    return await leaseChunkFile(this.#files, this.#reads, cid)
  }

  /** A receive slot (or a fresh buffer when none is free); a slot's lease hashes its bytes on a worker (`sha256`). */
  lendBuffer (length: number): Lease {
    const lease = this.#slots.lend(length)
    if (!this.#slots.owns(lease.bytes)) return lease
    const { bytes, release } = lease
    return { bytes, release, sha256: async () => await this.#digests.sha256(bytes) }
  }

  /**
   * For tests and benchmarks: receive and read slots lent and not handed back, fresh buffers lent
   * instead (garbage), chunk files written and read around the page cache, lent buffers hashed on the worker.
   */
  get stats (): { buffersLent: number, readsLent: number, readsPeak: number, readWaitsOut: number, freshBuffers: number, directWrites: number, directReads: number, workerDigests: number } {
    return {
      workerDigests: this.#digests.onWorker,
      buffersLent: this.#slots.lent,
      readsLent: this.#reads.lent,
      readsPeak: this.#reads.peak,
      readWaitsOut: this.#reads.waitedOut,
      freshBuffers: this.#slots.fresh + this.#reads.fresh,
      directWrites: this.#files.directWrites,
      directReads: this.#files.directReads
    }
  }

  /**
   * Keeps a chunk a peer sent: hashes the bytes (unless `verified`: the caller just did), then
   * writes them like an upload's chunks do (staging, fdatasync, rename, under the CID's lock;
   * around the page cache when they are in a buffer from `lendBuffer`). Storing a chunk that is
   * already here is a no-op. Directories are not fsynced: a crash may forget a cached chunk,
   * which is then fetched again, but never leaves a name on partial bytes.
   */
  async putChunk (cid: string, bytes: Uint8Array, opts: PutChunkOptions = {}): Promise<void> {
    if (this.#status !== 'started') throw new ShuttingDownError('The image store is not running.')
    if (opts.signal?.aborted === true) throw new AbortedError('The chunk write was aborted.', { cause: opts.signal.reason })
    if (!isChunkCid(cid) || (opts.verified !== true && cidOf(bytes) !== cid)) throw new ChunkIntegrityError(`The bytes offered for chunk ${String(cid)} do not hash to it.`)
    // A chunk received into a slot leaves no garbage around it (the bulk channel reads into one
    // buffer): V8's own scavenges do, ours would triple them. Other bytes came as socket reads.
    const aligned = this.#slots.owns(bytes)
    if (!aligned) received(bytes.byteLength)
    const put = this.#files.put(cid, bytes, { durableName: false, aligned })
    // stop() waits for writes in flight, as it does for ingests.
    const settled = put.then(noop, noop)
    this.#ingests.add(settled)
    try {
      await put
    } finally {
      this.#ingests.delete(settled)
    }
  }

  release (cids: Iterable<string>): void {
    for (const cid of cids) this.#pins.unpin(cid)
  }

  /**
   * Deletes each listed chunk that no upload has pinned and `isReferenced` disowns; returns how
   * many files went. Pass `listCids()` for a full sweep.
   */
  async collect (cids: Iterable<string> | AsyncIterable<string>, isReferenced: (cid: string) => Promise<boolean>): Promise<number> {
    let deleted = 0
    for await (const cid of cids) {
      if (!isChunkCid(cid) || this.#pins.has(cid)) continue
      if (await isReferenced(cid)) continue
      // Checks the pins again under the chunk's lock: an upload may have taken it meanwhile.
      if (await this.#files.deleteUnlessPinned(cid)) deleted++
    }
    if (deleted > 0) this.#log.debug({ chunks: deleted }, 'collected chunks')
    return deleted
  }

  /** Every chunk on disk, in no particular order. */
  async * listCids (): AsyncGenerator<string> {
    yield * this.#files.list()
  }

  async #serially (task: () => Promise<void>): Promise<void> {
    const run = this.#lifecycle.then(task)
    this.#lifecycle = run.catch(noop)
    await run
  }
}
