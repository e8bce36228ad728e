import { MAX_IDLE_HASHERS } from './constants.ts'
import { ImageHasher } from './image-hasher.ts'

/** Hands each ingest a hasher of its own; workers are spawned on first need and reused. */
export class ImageHasherPool {
  readonly #idle: ImageHasher[] = []
  readonly #all = new Set<ImageHasher>()

  acquire (): ImageHasher {
    let hasher = this.#idle.pop()
    if (hasher == null) {
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
      return
    }
    this.#all.delete(hasher)
    hasher.terminate().catch(() => {})
  }

  async close (): Promise<void> {
    const all = [...this.#all]
    this.#all.clear()
    this.#idle.length = 0
    await Promise.all(all.map(async hasher => { await hasher.terminate() }))
  }
}
