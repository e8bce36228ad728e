import { createHash } from 'node:crypto'
import { HASHER_IDLE_MS } from './constants.ts'
import { HashThread } from './hash-thread.ts'

/** A worker and the digests it has yet to answer. */
interface Thread {
  hasher: HashThread
  busy: number
}

/**
 * SHA-256 of chunks received from peers, on a worker thread that reads them where they are (the
 * receive slots are shared memory: nothing is copied). On a receiver's main thread this hash was
 * 54 % of its profile and what capped agent→agent transfer (docs/benchmarks.md, issue 8); on a
 * worker it uses another core. The mesh asks for it only while its main thread is near saturated
 * (offload-gate.ts). The worker starts on first use and ends `idleMs` after its last digest
 * settled, giving back its memory (~14 MB), as ImageHasherPool ends its idle workers; while a
 * worker is broken, digests are computed on the calling thread, so they are always right.
 */
export class ChunkDigests {
  readonly #idleMs: number
  #thread: Thread | undefined
  #idle: NodeJS.Timeout | undefined
  /** Digests a worker computed (the others were computed on the calling thread). */
  onWorker = 0
  /** Workers started so far. */
  started = 0

  constructor (opts: { idleMs?: number } = {}) {
    this.#idleMs = opts.idleMs ?? HASHER_IDLE_MS
  }

  /** The digest of `bytes`, which must not change until it settles; off this thread when they are shared memory. */
  async sha256 (bytes: Uint8Array): Promise<Uint8Array> {
    if (!(bytes.buffer instanceof SharedArrayBuffer)) return sha256Here(bytes)
    clearTimeout(this.#idle)
    const thread = this.#ready()
    if (thread.busy++ === 0) thread.hasher.ref()
    try {
      const hex = await thread.hasher.digestOf(bytes)
      this.onWorker++
      return Buffer.from(hex, 'hex')
    } catch {
      return sha256Here(bytes)
    } finally {
      if (--thread.busy === 0) {
        thread.hasher.unref()
        if (thread === this.#thread) this.#endWhenIdle()
      }
    }
  }

  /** Ends the worker (a later digest starts another). */
  async close (): Promise<void> {
    const thread = this.#thread
    this.#thread = undefined
    clearTimeout(this.#idle)
    await thread?.hasher.terminate()
  }

  #ready (): Thread {
    if (this.#thread?.hasher.healthy === true) return this.#thread
    const hasher = new HashThread('sha256')
    hasher.unref()
    this.started++
    this.#thread = { hasher, busy: 0 }
    return this.#thread
  }

  #endWhenIdle (): void {
    this.#idle = setTimeout(() => { void this.close() }, this.#idleMs)
    this.#idle.unref()
  }
}

function sha256Here (bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest()
}
