/**
 * Runs tasks one at a time per key. Chunk files are created and deleted under their CID's lock,
 * so "is it there?", "write it" and "delete it unless pinned" never interleave for one chunk.
 */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>()

  async run<T> (key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve()
    const result = previous.then(task)
    const tail = result.then(() => {}, () => {})
    this.#tails.set(key, tail)
    try {
      return await result
    } finally {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    }
  }
}
