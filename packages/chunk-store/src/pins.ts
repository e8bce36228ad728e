/** Reference counts of chunks that in-flight or unrecorded uploads depend on; collection skips them. */
export class Pins {
  readonly #counts = new Map<string, number>()

  pin (cid: string): void {
    this.#counts.set(cid, (this.#counts.get(cid) ?? 0) + 1)
  }

  /** Unpins once per occurrence, so a list with a repeated CID undoes the pins that list took. */
  unpin (cid: string): void {
    const count = this.#counts.get(cid)
    if (count == null) return
    if (count <= 1) this.#counts.delete(cid)
    else this.#counts.set(cid, count - 1)
  }

  has (cid: string): boolean {
    return this.#counts.has(cid)
  }

  get size (): number {
    return this.#counts.size
  }
}
