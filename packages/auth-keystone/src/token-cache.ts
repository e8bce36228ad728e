import { createHash } from 'node:crypto'

interface Entry<T> {
  value: T
  /** When the token itself expires (ms since the epoch). */
  expiresAt: number
  /** When the entry stops being trusted: cacheSeconds after Keystone vouched for it. */
  staleAt: number
}

/**
 * Validated tokens, keyed by a SHA-256 of the token so the cache never holds one. An entry lives
 * at most `ttlMs` and, unless the caller allows expired tokens, never past the token's expiry.
 * Bounded: when full, the oldest entry goes.
 */
export class TokenCache<T> {
  readonly #entries = new Map<string, Entry<T>>()
  readonly #ttlMs: number
  readonly #maxEntries: number

  constructor (ttlMs: number, maxEntries: number) {
    this.#ttlMs = ttlMs
    this.#maxEntries = maxEntries
  }

  get (token: string, opts: { allowExpired: boolean, now: number }): T | undefined {
    const key = keyOf(token)
    const entry = this.#entries.get(key)
    if (entry == null) return undefined
    if (opts.now >= entry.staleAt) {
      this.#entries.delete(key)
      return undefined
    }
    if (!opts.allowExpired && opts.now >= entry.expiresAt) return undefined
    return entry.value
  }

  set (token: string, value: T, expiresAt: number, now: number): void {
    if (this.#ttlMs <= 0) return
    const key = keyOf(token)
    this.#entries.delete(key)
    this.#entries.set(key, { value, expiresAt, staleAt: now + this.#ttlMs })
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string
      this.#entries.delete(oldest)
    }
  }

  get size (): number { return this.#entries.size }
}

function keyOf (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}
