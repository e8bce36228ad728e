import { isChunkCid, sha256DigestOf } from '@peerglance/interface'
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { link, mkdir, open, readdir, rename, rm, rmdir, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { ChunkSealer } from './chunk-sealer.ts'
import { CHUNKS_DIR, STAGING_DIR } from './constants.ts'
import { KeyedLock } from './keyed-lock.ts'
import type { Pins } from './pins.ts'

/**
 * The on-disk layout: `chunks/<x>/<cid>` for whole, verified chunks and `staging/` for files
 * being written. A chunk appears under its name only by rename once its bytes are on the device
 * (O_DSYNC writes), so a name never points at partial bytes.
 */
export class ChunkFiles {
  readonly #root: string
  readonly #chunks: string
  readonly #staging: string
  readonly #pins: Pins
  readonly #lock = new KeyedLock()
  /**
   * The chunks whose files are under `chunks/`, filled by `prepare` from its listing and kept by
   * every put and delete, so that neither `has` nor `put` asks the file system (an access() per
   * chunk written was 3 % of a downloader's main thread). Keyed by the first 16 bytes of the
   * digest as a string, ~53 bytes per chunk (a CID string costs ~180): 5 MB for a 100 GiB cache
   * of 1 MiB chunks. Two chunks share a key only if their sha256 digests agree on 128 bits,
   * which for a chunk nobody chose to collide with is a second preimage (2^128 work).
   */
  readonly #held = new Set<string>()
  /** Staging names: unique in this process by the counter, and apart from other processes' by the prefix. */
  readonly #tmpPrefix = randomBytes(6).toString('hex') + '-'
  #tmpCount = 0
  /** Fan-out directories made or being made; they are never deleted. */
  readonly #dirs = new Map<string, Promise<void>>()
  /**
   * Fan-out directories whose entry in chunks/ is not known to be durable yet: cached chunks
   * (putChunk) make them without an fsync of chunks/, which was one journal commit per chunk
   * while fan-out directories were still new. The next durable put syncs chunks/ once for all.
   */
  #unsynced = false
  /** Bytes of the chunk files under `chunks/`: counted once by `prepare`, then kept up to date. */
  bytes = 0
  /** Chunk files moved from the two-character layout by the last `prepare`. */
  moved = 0
  /** Bumped whenever a chunk file is added or deleted (ChunkBlocks `generation`). */
  generation = 0
  /** Set when chunk files are encrypted at rest (chunk-sealer.ts). */
  sealer: ChunkSealer | undefined
  /** Told of each chunk file dropped for failing to open. */
  onDrop: ((cid: string) => void) | undefined
  /** Cleared when the file system refuses O_DIRECT (tmpfs, some FUSE): writes then go through the page cache. */
  #direct = true
  /** Chunk files written with O_DIRECT (for tests and benchmarks). */
  directWrites = 0
  /** Cleared when the file system refuses O_DIRECT reads (read-range.ts): they then go through the page cache. */
  readsDirect = true
  /** Chunk files read with O_DIRECT (for tests and benchmarks). */
  directReads = 0

  constructor (root: string, pins: Pins) {
    this.#root = root
    this.#chunks = join(root, CHUNKS_DIR)
    this.#staging = join(root, STAGING_DIR)
    this.#pins = pins
  }

  /** Creates the layout and deletes whatever a crash left in staging; returns how many entries went. */
  async prepare (): Promise<number> {
    await mkdir(this.#staging, { recursive: true })
    const leftovers = await readdir(this.#staging)
    await Promise.all(leftovers.map(async name => { await rm(join(this.#staging, name), { recursive: true, force: true }) }))
    if (await mkdir(this.#chunks, { recursive: true }) != null) await syncDir(this.#root)
    this.bytes = 0
    this.#held.clear()
    this.#dirs.clear()
    // Fan-out directories already there need no mkdir before the first rename into them.
    for (const sub of await readdir(this.#chunks)) {
      if (sub.length === 1) this.#dirs.set(join(this.#chunks, sub), Promise.resolve())
    }
    this.moved = await this.#moveTwoCharacterLayout()
    for await (const cid of this.list()) {
      this.bytes += await sizeOf(this.path(cid))
      this.#held.add(heldKey(cid))
    }
    return leftovers.length
  }

  path (cid: string): string {
    return join(this.#dirOf(cid), cid)
  }

  async has (cid: string): Promise<boolean> {
    return isChunkCid(cid) && this.#held.has(heldKey(cid))
  }

  /**
   * A read found no file for the chunk (deleted behind the store's back): it is not held, so that
   * it is fetched and written again rather than skipped by `put`.
   */
  lost (cid: string): void {
    if (this.#held.delete(heldKey(cid))) this.generation++
  }

  /**
   * Stores verified bytes under their CID unless a file of that name exists; returns whether this
   * call created it. The caller fsyncs the directory (`syncDir(dirOf(cid))`) before relying on the name;
   * with `durableName: false` (a cache that may lose the chunk in a crash) a new fan-out
   * directory is not made durable either. `aligned` bytes (from aligned-chunks.ts) are written
   * with O_DIRECT when their length allows.
   */
  async put (cid: string, bytes: Uint8Array, opts: { durableName?: boolean, aligned?: boolean } = {}): Promise<boolean> {
    return await this.#lock.run(cid, async () => {
      const key = heldKey(cid)
      if (this.#held.has(key)) return false
      const tmp = join(this.#staging, `${this.#tmpPrefix}${this.#tmpCount++}.tmp`)
      if (this.sealer != null) bytes = this.sealer.seal(cid, bytes)
      try {
        if (!await this.#writeDirect(tmp, bytes, opts.aligned === true && this.sealer == null)) await writeDurably(tmp, bytes, 0)
        await this.#publish(tmp, cid, opts.durableName ?? true)
        this.#held.add(key)
        this.bytes += bytes.length
        this.generation++
      } catch (err) {
        await rm(tmp, { force: true })
        throw err
      }
      return true
    })
  }

  /**
   * Uploads write around the page cache: through it, the kernel spent ~2 of the upload's ~7
   * CPU-s per GiB copying chunks into pages, reclaiming them and writing them back (strace and
   * /proc/<pid>/task stime, docs/benchmarks.md), and a hypervisor's page cache belongs to its VMs.
   * Returns false, having written nothing, when O_DIRECT cannot be used for these bytes.
   */
  async #writeDirect (tmp: string, bytes: Uint8Array, aligned: boolean): Promise<boolean> {
    if (!aligned || !this.#direct || bytes.byteLength % DIRECT_ALIGNMENT !== 0) return false
    try {
      await writeDurably(tmp, bytes, constants.O_DIRECT)
      this.directWrites++
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
      this.#direct = false
      await rm(tmp, { force: true })
      return false
    }
  }

  async #publish (tmp: string, cid: string, durable: boolean): Promise<void> {
    const dir = this.#dirOf(cid)
    await this.#dir(dir, durable)
    if (durable && this.#unsynced) {
      this.#unsynced = false
      await syncDir(this.#chunks)
    }
    await rename(tmp, join(dir, cid))
  }

  /**
   * Fan-out directories are made on first use, and a durable rename into a new one waits until
   * its entry in chunks/ is durable.
   */
  async #dir (dir: string, durable: boolean): Promise<void> {
    let made = this.#dirs.get(dir)
    if (made == null) {
      made = this.#makeDir(dir, durable)
      this.#dirs.set(dir, made)
      made.catch(() => { this.#dirs.delete(dir) })
    }
    await made
  }

  async #makeDir (dir: string, durable: boolean): Promise<void> {
    try {
      await mkdir(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return
      throw err
    }
    if (durable) await syncDir(this.#chunks)
    else this.#unsynced = true
  }

  /**
   * Stores before this layout fanned out into 1,024 directories (`chunks/<xy>/`): a new store made
   * a directory, a new inode, for nearly every chunk of its first images, and an upload fsynced
   * hundreds of them. Their chunk files move to `chunks/<x>/` once, each by a link, the
   * directories made durable, then the old name unlinked, so that a crash at any point leaves every
   * chunk under at least one name this layout or that one finds. Returns how many moved.
   */
  async #moveTwoCharacterLayout (): Promise<number> {
    let moved = 0
    for (const sub of await readdir(this.#chunks)) {
      if (sub.length !== 2) continue
      const from = join(this.#chunks, sub)
      let names: string[]
      try {
        names = (await readdir(from)).filter(name => isChunkCid(name) && name.slice(-3, -1) === sub)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') continue
        throw err
      }
      const linked: string[] = []
      const dirs = new Set<string>()
      for (const name of names) {
        const dir = this.#dirOf(name)
        await this.#dir(dir, true)
        if (await linkOrMove(join(from, name), join(dir, name))) linked.push(name)
        dirs.add(dir)
      }
      for (const dir of dirs) await syncDir(dir)
      for (const name of linked) await unlink(join(from, name))
      moved += names.length
      // Anything else in it (not ours) keeps the directory; list() skips it.
      await rmdir(from).catch(() => {})
    }
    if (moved > 0) await syncDir(this.#chunks)
    return moved
  }

  /** Deletes a chunk file that failed to open (changed on disk), so it is fetched again. */
  async drop (cid: string): Promise<void> {
    await this.#lock.run(cid, async () => {
      const file = this.path(cid)
      try {
        const size = await sizeOf(file)
        await unlink(file)
        this.#held.delete(heldKey(cid))
        this.bytes -= size
        this.generation++
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        this.lost(cid)
      }
    })
    this.onDrop?.(cid)
  }

  /** Deletes the chunk file unless the chunk is pinned; returns whether a file was deleted. */
  async deleteUnlessPinned (cid: string): Promise<boolean> {
    if (!isChunkCid(cid)) return false
    return await this.#lock.run(cid, async () => {
      if (this.#pins.has(cid)) return false
      const file = this.path(cid)
      try {
        const size = await sizeOf(file)
        await unlink(file)
        this.#held.delete(heldKey(cid))
        this.bytes -= size
        this.generation++
        return true
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        this.lost(cid)
        return false
      }
    })
  }

  /** The fan-out directory holding a chunk's name: `syncDir` of it makes a put's rename survive a crash. */
  dirOf (cid: string): string {
    return this.#dirOf(cid)
  }

  async * list (): AsyncGenerator<string> {
    for (const sub of await readdir(this.#chunks)) {
      let names: string[]
      try {
        names = await readdir(join(this.#chunks, sub))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') continue
        throw err
      }
      for (const name of names) {
        if (isChunkCid(name) && fanOut(name) === sub) yield name
      }
    }
  }

  #dirOf (cid: string): string {
    return join(this.#chunks, fanOut(cid))
  }
}

// The last base32 character of a 36-byte CID carries only 3 bits, so fan out on the one before it:
// 32 evenly filled directories. A store of 1 MiB chunks holds ~3,200 names per directory per 100
// GiB, which ext4's and XFS's hashed directories look up in constant time; with 1,024 (two
// characters, as IPFS flatfs does) a new store made a directory for nearly every chunk of its
// first images, each a new inode: ~10 % of a downloader's thread-pool time in the shaped swarm
// (docs/benchmarks.md, "The chunk files on a downloader").
function fanOut (cid: string): string {
  return cid.slice(-2, -1)
}

/** Gives `to` the file `from` names; false when the link could not be made and the file was renamed instead. */
async function linkOrMove (from: string, to: string): Promise<boolean> {
  try {
    await link(from, to)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    // A crash after the link and before the unlink: the new name is the same chunk.
    if (code === 'EEXIST') return true
    // File systems without hard links.
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err
    await rename(from, to)
    return false
  }
}

async function sizeOf (path: string): Promise<number> {
  return (await stat(path)).size
}

function heldKey (cid: string): string {
  const digest = sha256DigestOf(cid)
  return Buffer.from(digest.buffer, digest.byteOffset, 16).toString('latin1')
}

/** O_DIRECT needs offsets and lengths in whole logical blocks; 4 KiB covers every common device. */
export const DIRECT_ALIGNMENT = 4096

/**
 * Creates `file` (it must not exist) with `bytes`, durable when this returns: opened with O_DSYNC,
 * each write returns once its data and the metadata needed to read them back are on the device,
 * as if an fdatasync followed it (open(2)), and that saves the fdatasync's own trip through the
 * thread pool per chunk.
 */
async function writeDurably (file: string, bytes: Uint8Array, flags: number): Promise<void> {
  const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC | flags)
  try {
    // One write per chunk: FileHandle.writeFile would split it into 512 KiB writes.
    for (let offset = 0; offset < bytes.length;) {
      offset += (await handle.write(bytes, offset, bytes.length - offset)).bytesWritten
    }
  } finally {
    await handle.close()
  }
}

export async function syncDir (dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
