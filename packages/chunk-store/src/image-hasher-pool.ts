import { HASHER_IDLE_MS, MAX_IDLE_HASHERS } from './constants.ts'
import { ImageHasher } from './image-hasher.ts'

/**
 * Hands each ingest a hasher of its own; workers are spawned on first need and reused while
 * uploads keep coming. An idle pair ends after HASHER_IDLE_MS: each worker is a V8 isolate of its
 * own (tens of MB), which an agent that serves far more than it ingests should not keep.
 */
export class ImageHasherPool {
  readonly #idle: ImageHasher[] = []
  readonly #all = new Set<ImageHasher>()
  readonly #timers = new Map<ImageHasher, NodeJS.Timeout>()

  acquire (): ImageHasher {
    let hasher = this.#idle.pop()
    if (hasher != null) {
      clearTimeout(this.#timers.get(hasher))
      this.#timers.delete(hasher)
    } else {
      hasher = new ImageHasher()
      this.#all.add(hasher)
    }
    hasher.ref()
    return hasher
  }

  /** Takes back a hasher whose digests were finished or reset. */
  release (hasher: ImageHasher): void {
    if (hasher.healthy && this.#idle.length < MAX_IDLE_HASHERS && this.#all.has(hasher)) {
      hasher.unref()
      this.#idle.push(hasher)
      const timer = setTimeout(() => {
        this.#timers.delete(hasher)
        const at = this.#idle.indexOf(hasher)
        if (at < 0) return
        this.#idle.splice(at, 1)
        this.#all.delete(hasher)
        hasher.terminate().catch(() => {})
      }, HASHER_IDLE_MS)
      timer.unref()
      this.#timers.set(hasher, timer)
      return
    }
    this.#all.delete(hasher)
    hasher.terminate().catch(() => {})
  }

  async close (): Promise<void> {
    for (const timer of this.#timers.values()) clearTimeout(timer)
    this.#timers.clear()
    const all = [...this.#all]
    this.#all.clear()
    this.#idle.length = 0
    await Promise.all(all.map(async hasher => { await hasher.terminate() }))
  }
}
