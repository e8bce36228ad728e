/**
 * What a seed sent to downloaders (GETs flagged `GET_ONCE`, framing.ts: every fetch a downloader
 * makes from a seed): each chunk goes to the first downloader that asks for it, and another's
 * request within `ttlMs` is answered NOT_FOUND while that first one is connected, so the seed's
 * upload, the scarce one, carries each chunk about once.
 *
 * Why the seed keeps this rather than trusting the downloaders' own share-out
 * (scheduling.ts, `ownerOf`): each downloader sees only its own peers, and with bounded peer sets
 * their views differ (in the simulator, scripts/bench/simulate.ts, a seed sent every chunk 5.4
 * times to 100 hosts); and on an overloaded machine an owner looks silent for seconds, so readers
 * fell back to the seed for chunks their owner was about to announce (seed egress 1.03–1.20 × S in
 * the shaped swarm, docs/benchmarks.md). A refused downloader gets the chunk from the one that was
 * served, as it spreads; if that one goes away (`releasePeer`) or `ttlMs` passes, the seed serves
 * it again.
 *
 * Bounded: the oldest entries go first beyond `maxEntries` (a 10 GiB image is 10,240 chunks).
 */
export class SeedLedger {
  /** CID → when, and to whom, it went out as a first fetch. */
  readonly #sent = new Map<string, { at: number, peer: string }>()
  readonly #ttlMs: number
  readonly #maxEntries: number

  constructor (ttlMs = 15_000, maxEntries = 200_000) {
    this.#ttlMs = ttlMs
    this.#maxEntries = maxEntries
  }

  /**
   * True when this chunk may go out to `peer` as a first fetch now (and records that it did): it
   * went to nobody else within the last `ttlMs`. The same peer asking again (its transfer failed)
   * is served.
   */
  claim (cid: string, peer: string, now: number): boolean {
    const last = this.#sent.get(cid)
    if (last != null && last.peer !== peer && now - last.at < this.#ttlMs) return false
    this.#sent.delete(cid)
    this.#sent.set(cid, { at: now, peer })
    for (const [oldest, sent] of this.#sent) {
      if (this.#sent.size <= this.#maxEntries && now - sent.at < this.#ttlMs) break
      this.#sent.delete(oldest)
    }
    return true
  }

  /**
   * The chunk claimed by `peer` has just been handed to its connection: the others' wait counts
   * from now. A claim is made when the request is answered, and a busy seed's answers queue behind
   * each other in its sockets for seconds; counted from the claim, other downloaders were served
   * chunks still on their way to the first one (seed egress 2 × S in the shaped swarm on an
   * overloaded machine).
   */
  sent (cid: string, peer: string, now: number): void {
    const last = this.#sent.get(cid)
    if (last == null || last.peer !== peer) return
    this.#sent.delete(cid)
    this.#sent.set(cid, { at: now, peer })
  }

  /** The send failed: the next first fetch of it is served. */
  release (cid: string): void {
    this.#sent.delete(cid)
  }

  /** The peer went away: what it was sent may not have spread, so it is served again. */
  releasePeer (peer: string): void {
    for (const [cid, sent] of this.#sent) if (sent.peer === peer) this.#sent.delete(cid)
  }

  get size (): number { return this.#sent.size }
}
