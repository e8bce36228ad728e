/**
 * A hybrid logical clock (Kulkarni et al.): wall-clock milliseconds plus a counter, so that
 * clocks move forward even when a peer's wall clock is behind, and a replica id that breaks ties.
 * The string form sorts in clock order, so merging compares strings.
 */
export class HybridClock {
  readonly #replicaId: string
  readonly #now: () => number
  #wall = 0
  #counter = 0

  constructor (replicaId: string, now: () => number = Date.now) {
    this.#replicaId = replicaId
    this.#now = now
  }

  get replicaId (): string { return this.#replicaId }

  /** A clock later than every clock this replica issued or observed. */
  tick (): string {
    const now = this.#now()
    if (now > this.#wall) {
      this.#wall = now
      this.#counter = 0
    } else {
      this.#counter++
    }
    return encode(this.#wall, this.#counter, this.#replicaId)
  }

  /** Moves past a clock seen from another replica, so local writes order after it. */
  observe (clock: string): void {
    const { wall, counter } = decode(clock)
    if (wall > this.#wall || (wall === this.#wall && counter > this.#counter)) {
      this.#wall = wall
      this.#counter = counter
    }
  }
}

function encode (wall: number, counter: number, replicaId: string): string {
  return `${wall.toString().padStart(15, '0')}.${counter.toString().padStart(6, '0')}.${replicaId}`
}

function decode (clock: string): { wall: number, counter: number } {
  const [wall, counter] = clock.split('.', 2)
  return { wall: Number(wall), counter: Number(counter) }
}

/** The wall-clock milliseconds a clock was issued at. */
export function wallOf (clock: string): number {
  return Number(clock.slice(0, clock.indexOf('.')))
}
