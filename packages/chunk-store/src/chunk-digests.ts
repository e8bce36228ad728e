import { createHash } from 'node:crypto'
import { HASHER_IDLE_MS } from './constants.ts'
import { HashThread } from './hash-thread.ts'

/** A worker and the digests it has yet to answer. */
interface Thread {
  hasher: HashThread
  busy: number
  lastUsed: number
}

/**
 * SHA-256 of chunks received from peers, on a worker thread that reads them where they are (the
 * receive slots are shared memory: nothing is copied). On a receiver's main thread this hash was
 * 54 % of its profile and what capped agent→agent transfer (docs/benchmarks.md, issue 8); on a
 * worker it uses another core. The mesh asks for it only while its main thread is near saturated
 * (offload-gate.ts). The worker starts on first use and ends after HASHER_IDLE_MS without one,
 * giving back its memory (~14 MB); while a worker is broken, digests are computed on the calling
 * thread, so they are always right.
 */
export class ChunkDigests {
  #thread: Thread | undefined
  #idle: NodeJS.Timeout | undefined
  /** Digests a worker computed (the others were computed on the calling thread). */
  onWorker = 0

  /** The digest of `bytes`, which must not change until it settles; off this thread when they are shared memory. */
  async sha256 (bytes: Uint8Array): Promise<Uint8Array> {
    if (!(bytes.buffer instanceof SharedArrayBuffer)) return sha256Here(bytes)
    const thread = this.#ready()
    if (thread.busy++ === 0) thread.hasher.ref()
    try {
      const hex = await thread.hasher.digestOf(bytes)
      this.onWorker++
      return Buffer.from(hex, 'hex')
    } catch {
      return sha256Here(bytes)
    } finally {
      thread.lastUsed = performance.now()
      if (--thread.busy === 0) thread.hasher.unref()
    }
  }

  /** Ends the worker (a later digest starts another). */
  async close (): Promise<void> {
    const thread = this.#thread
    this.#thread = undefined
    clearInterval(this.#idle)
    this.#idle = undefined
    await thread?.hasher.terminate()
  }

  #ready (): Thread {
    if (this.#thread?.hasher.healthy === true) return this.#thread
    const hasher = new HashThread('sha256')
    hasher.unref()
    const thread: Thread = { hasher, busy: 0, lastUsed: performance.now() }
    this.#thread = thread
    if (this.#idle == null) {
      this.#idle = setInterval(() => {
        const current = this.#thread
        if (current == null || (current.busy === 0 && performance.now() - current.lastUsed >= HASHER_IDLE_MS)) void this.close()
      }, HASHER_IDLE_MS)
      this.#idle.unref()
    }
    return thread
  }
}

function sha256Here (bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest()
}
