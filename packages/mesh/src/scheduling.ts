/**
 * The swarm's scheduling policy: which chunk a download session fetches next and from which
 * peer, as plain functions of what the session knows (`Holdings`, `Wants`) and the clock. No
 * I/O, no timers: the session (session.ts) calls them, and so does the simulator
 * (scripts/bench/simulate.ts), on a modelled network.
 *
 * Order, per pick (`pickNext`):
 * 1. Chunks within `readAhead` of a reader's position, the one a reader blocks on first.
 * 2. Chunks another downloader announced, rarest of a sample, random tie-break, so downloaders
 *    feed each other.
 * 3. Chunks this agent is responsible for (`ownerOf`), in image order, from any holder.
 * 4. When none of those can start: chunks only seeds hold, in image order, whoever is
 *    responsible for them: first those we rank second for by the same hashing (`runnerUpOf`,
 *    `stealScan`), then any (`stealAnyScan`). The seed's ledger serves each to the first asker,
 *    so an owner with a longer share left gets them from us instead (announced), and a seed with
 *    room is not left idle while some downloader still works through its share. Ranked second
 *    first, because all downloaders scanning the same chunks alike collided: the seed refused
 *    172–254 of ~430 first fetches as sent elsewhere in the shaped swarm, each a request that
 *    held a slot of the asker's pipeline to the seed and brought nothing. In image order, not
 *    from the end: the owner left behind is usually one whose connection from the seed is slow
 *    (the shaped swarm: one downloader got a chunk from the seed every 1.3–2.7 s while the
 *    others got theirs in 0.3 s), and every reader blocks on the front of its share, which
 *    stealing from the end left to it (all readers at 50 % of the image when their links had
 *    95 %, then reading half the image back at the end). Simulator, the seed's flow to one host
 *    at 3 % of a link and readers at 250 MB/s: slowest host 1.17–1.40 × the bound → 1.14–1.17.
 * 5. Chunks whose responsible downloader has been silent for `backgroundFallbackMs`.
 *
 * Fetches no reader waits for (steps 2–5) keep at most `BACKGROUND_PER_PEER` in flight per peer
 * when downloaders share out the seeds' chunks: a chunk is bound to a source late, when the
 * source can send it soon, rather than queued behind others' requests at the one downloader
 * that held it first while other holders idle; and each downloader's share of a seed's upload
 * stays even, so no downloader ends up the only holder of many chunks all the others want.
 * (Simulator, 8 hosts at 200 Mbit/s: slowest host 1.25–1.43 × the bound with 8 per peer and no
 * step 4, 1.07–1.11 with both; docs/benchmarks.md.) One, not two: a peer sends every request it
 * holds at once, each on its own connection (up to 4 per peer), so a chunk takes as long as all
 * the chunks its sender sends meanwhile; one per peer halves that, so chunks are passed on
 * sooner and the last ones spread faster (shaped swarm, A/B: slowest host 17.7 → 15.5 s median
 * under load; the simulator, one connection per pair, cannot see it and stays at 1.07–1.10).
 *
 * Seeding: a chunk only seeds hold is fetched from a seed by ONE downloader, the one that ranks
 * first for it by rendezvous hashing over the current downloaders (`ownerOf`); the others wait
 * for it to announce the chunk and fetch it from that downloader. A chunk a reader waits for
 * falls back to a seed once its owner has been silent for `urgentFallbackMs`, or once it has
 * been wanted for `backgroundFallbackMs`. Sources (`chooseSource`): downloaders and complete
 * agents before seeds, the least busy first; a busy downloader is waited for rather than a seed
 * asked, because a seed's upload is the scarce one.
 */
import { getBit, HAVE_COMPLETE, HAVE_DOWNLOADING } from './framing.ts'
import type { HaveState } from './framing.ts'

/** Why a chunk was fetched (the scheduling step), for counters. */
export type FetchReason = 'urgent' | 'urgent-mine' | 'urgent-owner-quiet' | 'urgent-waited' | 'announced' | 'mine' | 'unclaimed' | 'owner-quiet'

export interface Pick {
  index: number
  peer: string
  reason: FetchReason
}

/** What a session knows of one peer's holdings of its image. */
export interface PeerHolding {
  bits: Uint8Array
  /** 1: downloading this image now; 2: holds all of it; 0: holds some, not downloading. */
  state: HaveState
  /** It said it was downloading this image at some time in this session. */
  downloader: boolean
  /** It said it is a downloader connected to a seed of the image (framing.ts, NEAR_SEED). */
  nearSeed: boolean
  connected: boolean
  /** When it last told us anything about this image. */
  lastHeard: number
}

export interface PolicySettings {
  readAhead: number
  startGraceMs: number
  urgentFallbackMs: number
  backgroundFallbackMs: number
  maxInFlightPerPeer: number
  fetchWhole: boolean
}

/** Who holds what, as one session sees it. */
export interface Holdings {
  readonly self: string
  readonly n: number
  readonly peers: ReadonlyMap<string, PeerHolding>
  /** Chunk index → peer → until when that peer is not asked for that chunk (it failed it). */
  readonly failed: ReadonlyMap<number, ReadonlyMap<string, number>>
  /** The downloaders sharing out first fetches from seeds, sorted, self included when it reaches a seed (`downloadersOf`). */
  readonly downloaders: readonly string[]
  /** `rendezvousHash(key, peer)`, cached by the caller. */
  readonly hashOf: (peer: string) => number
  /** `ownerOf` and `runnerUpOf` by chunk index, filled as computed; the caller empties them when `downloaders` change. */
  readonly owners?: Array<string | undefined>
  readonly runnersUp?: Array<string | undefined>
  readonly isBad: (peer: string) => boolean
  /** Fetches in flight to the peer, over all sessions. */
  readonly load: (peer: string) => number
}

/** What a session wants, and where its scans stand; `pickNext` moves the scans and the sets. */
export interface Wants {
  /** When the session started asking the network. */
  started: number
  /** Not held here and not in flight. */
  readonly wanted: (index: number) => boolean
  readonly isLocal: (index: number) => boolean
  /** Chunks readers are blocked on. */
  readonly waiting: Iterable<number>
  readonly cursors: Iterable<{ readonly position: number, readonly last: number }>
  readonly hasReaders: boolean
  /** When each wanted chunk first came within a reader's window. */
  readonly urgentSince: Map<number, number>
  /** Indices announced by downloaders and not yet held here. */
  readonly available: Set<number>
  ownedScan: number
  fallbackScan: number
  /** Step 4's scans, upwards from the first chunk: of the chunks we rank second for, and of any. */
  stealScan: number
  stealAnyScan: number
}

/** Candidates compared for rarity per pick among announced chunks. */
export const RARITY_SAMPLE = 16

/** Fetches no reader waits for, in flight per peer, when several downloaders share the seeds' chunks (see above). */
export const BACKGROUND_PER_PEER = 1

/** A connected, good peer that holds chunk `index` (whether or not it failed it lately). */
function holds (h: Holdings, key: string, peer: PeerHolding, index: number): boolean {
  return peer.connected && getBit(peer.bits, index) && !h.isBad(key)
}

/** A peer may be asked for chunk `index`: it holds it (`holds`) and has not just failed it. */
export function usable (h: Holdings, key: string, peer: PeerHolding, index: number, now: number): boolean {
  if (!holds(h, key, peer, index)) return false
  const until = h.failed.get(index)?.get(key)
  return until == null || until <= now
}

/** Whether some peer holds the chunk, usable now or not (it failed it lately). */
export function anyHolder (h: Holdings, index: number): boolean {
  for (const [key, peer] of h.peers) if (holds(h, key, peer, index)) return true
  return false
}

/** How many usable peers hold the chunk. */
export function holderCount (h: Holdings, index: number, now: number): number {
  let count = 0
  for (const [key, peer] of h.peers) if (usable(h, key, peer, index, now)) count++
  return count
}

/**
 * The least busy usable holder of a chunk: a downloader or complete agent if any has it and has
 * room, else a seed when `seedsAllowed`. Ties are broken at random. `count.holders` is set to the
 * number of usable holders (`holderCount`), found on the way.
 */
export function chooseSource (h: Holdings, index: number, seedsAllowed: boolean, perPeer: number, now: number, random: () => number = Math.random, count?: { holders: number }): string | undefined {
  let best: string | undefined
  let bestTier = 3
  let bestLoad = Infinity
  let ties = 0
  let holders = 0
  let busyDownloader = false
  for (const [key, peer] of h.peers) {
    if (!usable(h, key, peer, index, now)) continue
    holders++
    const tier = isSeed(peer) ? 1 : 0
    const load = h.load(key)
    if (load >= perPeer) {
      if (tier === 0) busyDownloader = true
      continue
    }
    if (tier === 1 && !seedsAllowed) continue
    if (tier < bestTier || (tier === bestTier && load < bestLoad)) {
      best = key
      bestTier = tier
      bestLoad = load
      ties = 1
    } else if (tier === bestTier && load === bestLoad && random() * ++ties < 1) {
      // Each of k equal candidates ends up chosen with probability 1/k.
      best = key
    }
  }
  if (count != null) count.holders = holders
  // A downloader that holds it but is busy is worth the wait: a seed's upload is the scarce one.
  if (bestTier === 1 && busyDownloader) return undefined
  return best
}

/** A seed: holds chunks of the image without downloading it (an agent that uploaded it, or kept part of it). */
export function isSeed (peer: PeerHolding): boolean {
  return !peer.downloader && peer.state !== HAVE_COMPLETE
}

/** Whether a usable seed that holds any of the image is connected. */
export function reachesSeed (peers: ReadonlyMap<string, PeerHolding>, isBad: (peer: string) => boolean): boolean {
  for (const [key, peer] of peers) {
    if (peer.connected && isSeed(peer) && !isBad(key) && peer.bits.some(b => b !== 0)) return true
  }
  return false
}

/**
 * The downloaders that share out first fetches from seeds: connected peers downloading now that
 * reach a seed, and us when we do; sorted. A downloader that reaches none cannot fetch its share
 * from a seed, so it takes none.
 */
export function downloadersOf (self: string, selfNearSeed: boolean, peers: ReadonlyMap<string, PeerHolding>, isBad: (peer: string) => boolean): string[] {
  const list = selfNearSeed ? [self] : []
  for (const [key, peer] of peers) {
    if (peer.state === HAVE_DOWNLOADING && peer.nearSeed && peer.connected && !isBad(key)) list.push(key)
  }
  return list.sort()
}

/** Rendezvous hashing: the downloader with the highest score for the chunk fetches it from a seed. */
export function ownerOf (h: Holdings, index: number): string {
  if (h.downloaders.length === 0) return h.self
  if (h.downloaders.length === 1) return h.downloaders[0]
  return h.owners?.[index] ?? rank(h, index)[0]
}

/** The downloader with the second highest score for the chunk (none when fewer than two share). */
export function runnerUpOf (h: Holdings, index: number): string | undefined {
  if (h.downloaders.length < 2) return undefined
  return h.runnersUp?.[index] ?? rank(h, index)[1]
}

/** The chunk's owner and runner-up by rendezvous score (ties to the lower peer id), cached when the caller keeps them. */
function rank (h: Holdings, index: number): [string, string] {
  let best = -1
  let second = -1
  let owner = ''
  let runnerUp = ''
  for (const peer of h.downloaders) {
    const score = mix(h.hashOf(peer) ^ Math.imul(index + 1, 0x9e3779b1))
    if (score > best || (score === best && peer < owner)) {
      second = best
      runnerUp = owner
      best = score
      owner = peer
    } else if (score > second || (score === second && peer < runnerUp)) {
      second = score
      runnerUp = peer
    }
  }
  if (h.owners != null) h.owners[index] = owner
  if (h.runnersUp != null) h.runnersUp[index] = runnerUp
  return [owner, runnerUp]
}

/** How long the chunk's owner has said nothing (0 when it is us; Infinity when unknown). */
export function ownerSilence (h: Holdings, index: number, now: number): number {
  const owner = ownerOf(h, index)
  if (owner === h.self) return 0
  const peer = h.peers.get(owner)
  return peer == null ? Infinity : now - peer.lastHeard
}

/** Whether usable seeds hold the chunk and no usable downloader or complete agent does. */
function onlySeedsHold (h: Holdings, index: number, now: number): boolean {
  let seeds = false
  for (const [key, peer] of h.peers) {
    if (!usable(h, key, peer, index, now)) continue
    if (!isSeed(peer)) return false
    seeds = true
  }
  return seeds
}

/** Whether some connected, good peer has a fetch slot free. */
function anyRoom (h: Holdings, perPeer: number): boolean {
  for (const [key, peer] of h.peers) if (peer.connected && h.load(key) < perPeer && !h.isBad(key)) return true
  return false
}

/** The next fetch to start, or undefined when nothing can start now. */
export function pickNext (h: Holdings, w: Wants, s: PolicySettings, now: number, random: () => number = Math.random): Pick | undefined {
  const graceOver = now - w.started >= s.startGraceMs
  const choose = (index: number, seeds: boolean): string | undefined => chooseSource(h, index, seeds, s.maxInFlightPerPeer, now, random)
  // 1. What readers need next, closest first; the chunk a reader blocks on first of all.
  const urgent: number[] = []
  for (const index of w.waiting) if (w.wanted(index)) urgent.push(index)
  for (const cursor of w.cursors) {
    const until = Math.min(cursor.last, cursor.position + s.readAhead)
    for (let i = cursor.position; i <= until; i++) if (w.wanted(i)) urgent.push(i)
  }
  for (const index of urgent) if (!w.urgentSince.has(index)) w.urgentSince.set(index, now)
  // Every peer busy or gone: nothing can start, and the scans below (run on every announcement a
  // session hears) would find nothing.
  if (!anyRoom(h, s.maxInFlightPerPeer)) return undefined
  for (const index of urgent) {
    const since = w.urgentSince.get(index) ?? now
    // From a seed: when it is ours to fetch, when its owner went quiet, or when waited too long.
    // (Before this was a pure function with a test, "ours" was missing: a reader blocked on a
    // chunk of its own share waited for step 3's scan to reach it.)
    const mine = ownerOf(h, index) === h.self
    const silence = mine ? 0 : ownerSilence(h, index, now)
    const quiet = silence >= s.urgentFallbackMs
    const seeds = graceOver && (mine || quiet || now - since >= s.backgroundFallbackMs)
    const peer = choose(index, seeds)
    if (peer != null) return { index, peer, reason: mine ? 'urgent-mine' : quiet ? 'urgent-owner-quiet' : seeds ? 'urgent-waited' : 'urgent' }
  }
  if (!s.fetchWhole && !w.hasReaders) return undefined
  const background = Math.min(BACKGROUND_PER_PEER, s.maxInFlightPerPeer)
  const chooseLater = (index: number): string | undefined => chooseSource(h, index, true, background, now, random)
  // 2. Chunks other downloaders announced: rarest of a sample.
  let best: (Pick & { rarity: number, tie: number }) | undefined
  let sampled = 0
  const counted = { holders: 0 }
  for (const index of w.available) {
    if (!w.wanted(index)) {
      if (w.isLocal(index)) w.available.delete(index)
      continue
    }
    const peer = chooseSource(h, index, false, background, now, random, counted)
    if (peer == null) continue
    const rarity = counted.holders
    const tie = random()
    if (best == null || rarity < best.rarity || (rarity === best.rarity && tie < best.tie)) best = { index, peer, rarity, tie, reason: 'announced' }
    if (++sampled >= RARITY_SAMPLE) break
  }
  if (best != null) {
    w.available.delete(best.index)
    return { index: best.index, peer: best.peer, reason: best.reason }
  }
  if (!graceOver) return undefined
  // 3. Chunks this agent is responsible for, in image order, from any holder (none when others
  // share out the seed's chunks without us: we reach no seed).
  const sharing = h.downloaders.length === 0 || h.downloaders.includes(h.self)
  if (!sharing) w.ownedScan = h.n
  for (; w.ownedScan < h.n; w.ownedScan++) {
    const index = w.ownedScan
    if (!w.wanted(index) || ownerOf(h, index) !== h.self) continue
    const peer = chooseLater(index)
    if (peer == null) {
      // Nobody holds it yet, or every holder is busy: try again next time from here.
      if (holderCount(h, index, now) > 0) break
      continue
    }
    return { index, peer, reason: 'mine' }
  }
  // 4. Nothing of our share can start: the others' chunks that only seeds hold, in image order;
  // those we rank second for first, so that downloaders done with their shares ask for different ones.
  if (sharing && h.downloaders.length > 1) {
    // One scan upwards from w[scan]; 'busy' stops both where the next chunk's sources have no room.
    const steal = (scan: 'stealScan' | 'stealAnyScan', ranked: boolean): Pick | 'busy' | undefined => {
      for (; w[scan] < h.n; w[scan]++) {
        const index = w[scan]
        if (!w.wanted(index) || (ranked && runnerUpOf(h, index) !== h.self) || !onlySeedsHold(h, index, now)) continue
        const peer = chooseLater(index)
        return peer == null ? 'busy' : { index, peer, reason: 'unclaimed' }
      }
      return undefined
    }
    const stolen = steal('stealScan', true) ?? steal('stealAnyScan', false)
    if (stolen != null && stolen !== 'busy') return stolen
  }
  // 5. Chunks whose owner has gone quiet: from any holder.
  const quiet = new Set<string>()
  for (const owner of h.downloaders) {
    if (owner === h.self) continue
    const peer = h.peers.get(owner)
    if (peer == null || now - peer.lastHeard >= s.backgroundFallbackMs) quiet.add(owner)
  }
  if (quiet.size > 0) {
    for (let scanned = 0; scanned < h.n; scanned++) {
      const index = w.fallbackScan
      w.fallbackScan = (w.fallbackScan + 1) % h.n
      if (!w.wanted(index) || !quiet.has(ownerOf(h, index))) continue
      const peer = chooseLater(index)
      if (peer != null) return { index, peer, reason: 'owner-quiet' }
      if (holderCount(h, index, now) > 0) break
    }
  }
  return undefined
}

/** The per-peer half of a rendezvous score (FNV-1a of the image key and the peer id). */
export function rendezvousHash (key: string, peer: string): number {
  const text = `${key}/${peer}`
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** murmur3's finalizer: spreads the bits of a 32-bit value. */
function mix (x: number): number {
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b)
  x ^= x >>> 13
  x = Math.imul(x, 0xc2b2ae35)
  x ^= x >>> 16
  return x >>> 0
}
