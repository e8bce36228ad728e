import { describe, expect, it } from 'vitest'
import { HAVE_COMPLETE, HAVE_DOWNLOADING, HAVE_NONE, setBit } from '../src/framing.ts'
import type { HaveState } from '../src/framing.ts'
import { BACKGROUND_PER_PEER, chooseSource, downloadersOf, holderCount, ownerOf, ownerSilence, pickNext, reachesSeed, rendezvousHash, runnerUpOf } from '../src/scheduling.ts'
import type { Holdings, PeerHolding, PolicySettings, Wants } from '../src/scheduling.ts'

const N = 64
const NOW = 1_000_000
const SETTINGS: PolicySettings = { readAhead: 4, startGraceMs: 100, urgentFallbackMs: 5_000, backgroundFallbackMs: 15_000, maxInFlightPerPeer: 2, fetchWhole: true }

function holding (state: HaveState, held: Iterable<number> | 'all', extra: Partial<PeerHolding> = {}): PeerHolding {
  const bits = new Uint8Array(Math.ceil(N / 8))
  if (held === 'all') bits.fill(0xff)
  else for (const i of held) setBit(bits, i)
  return { bits, state, downloader: state === HAVE_DOWNLOADING, nearSeed: state === HAVE_DOWNLOADING, connected: true, lastHeard: NOW, ...extra }
}

function holdingsOf (peers: Record<string, PeerHolding>, opts: { self?: string, load?: Record<string, number>, bad?: string[], failed?: Map<number, Map<string, number>>, nearSeed?: boolean } = {}): Holdings {
  const self = opts.self ?? 'me'
  const map = new Map(Object.entries(peers))
  const isBad = (peer: string): boolean => opts.bad?.includes(peer) ?? false
  return {
    self,
    n: N,
    peers: map,
    failed: opts.failed ?? new Map(),
    downloaders: downloadersOf(self, opts.nearSeed ?? true, map, isBad),
    hashOf: peer => rendezvousHash('image', peer),
    isBad,
    load: peer => opts.load?.[peer] ?? 0
  }
}

function wantsOf (opts: Partial<Wants> & { local?: Set<number>, inflight?: Set<number> } = {}): Wants {
  const local = opts.local ?? new Set<number>()
  const inflight = opts.inflight ?? new Set<number>()
  return {
    started: opts.started ?? NOW - 1_000,
    wanted: i => i >= 0 && i < N && !local.has(i) && !inflight.has(i),
    isLocal: i => local.has(i),
    waiting: opts.waiting ?? [],
    cursors: opts.cursors ?? [],
    hasReaders: opts.hasReaders ?? false,
    urgentSince: opts.urgentSince ?? new Map(),
    available: opts.available ?? new Set(),
    ownedScan: opts.ownedScan ?? 0,
    fallbackScan: opts.fallbackScan ?? 0,
    stealScan: opts.stealScan ?? 0,
    stealAnyScan: opts.stealAnyScan ?? 0
  }
}

/** Always the same tie-break, so a test never depends on chance. */
const first = (): number => 0.5

describe('scheduling policy', () => {
  it('asks a downloader or complete agent before a seed, and the least busy of them', () => {
    const h = holdingsOf({
      seed: holding(HAVE_NONE, 'all'),
      busy: holding(HAVE_DOWNLOADING, [3], { lastHeard: NOW }),
      idle: holding(HAVE_COMPLETE, 'all')
    }, { load: { busy: 1, idle: 0 } })
    expect(chooseSource(h, 3, true, 2, NOW, first)).toBe('idle')
    // Only seeds hold chunk 5 besides the complete agent; without the complete one, the seed only when allowed.
    const seedsOnly = holdingsOf({ seed: holding(HAVE_NONE, 'all') })
    expect(chooseSource(seedsOnly, 5, false, 2, NOW, first)).toBeUndefined()
    expect(chooseSource(seedsOnly, 5, true, 2, NOW, first)).toBe('seed')
  })

  it('waits for a busy downloader rather than asking a seed', () => {
    const h = holdingsOf({ seed: holding(HAVE_NONE, 'all'), peer: holding(HAVE_DOWNLOADING, [7]) }, { load: { peer: 2 } })
    expect(chooseSource(h, 7, true, 2, NOW, first)).toBeUndefined()
    expect(chooseSource(h, 8, true, 2, NOW, first)).toBe('seed')
  })

  it('never asks a disconnected or bad peer, nor one that just failed the chunk', () => {
    const failed = new Map([[1, new Map([['a', NOW + 10]])]])
    const h = holdingsOf({
      a: holding(HAVE_COMPLETE, 'all'),
      b: holding(HAVE_COMPLETE, 'all', { connected: false }),
      c: holding(HAVE_COMPLETE, 'all')
    }, { bad: ['c'], failed })
    expect(chooseSource(h, 1, true, 2, NOW, first)).toBeUndefined()
    expect(holderCount(h, 1, NOW)).toBe(0)
    expect(chooseSource(h, 2, true, 2, NOW, first)).toBe('a')
    // The exclusion ends.
    expect(chooseSource(h, 1, true, 2, NOW + 10, first)).toBe('a')
  })

  it('shares the chunks only seeds hold among the downloaders, each to exactly one, evenly', () => {
    const ids = ['me', 'd1', 'd2', 'd3']
    const counts = new Map(ids.map(id => [id, 0]))
    const views = ids.map(self => holdingsOf(Object.fromEntries(ids.filter(id => id !== self).map(id => [id, holding(HAVE_DOWNLOADING, [])])), { self }))
    for (let i = 0; i < 4000; i++) {
      const owners = views.map(h => ownerOf(h, i))
      // Every downloader computes the same owner for a chunk.
      expect(new Set(owners).size).toBe(1)
      counts.set(owners[0], counts.get(owners[0])! + 1)
    }
    for (const count of counts.values()) expect(count).toBeGreaterThan(850)
  })

  it('only downloaders that reach a seed share out its chunks (peer sets are bounded: most reach none)', () => {
    const far = { d1: holding(HAVE_DOWNLOADING, [], { nearSeed: true }), d2: holding(HAVE_DOWNLOADING, [], { nearSeed: false }) }
    expect(reachesSeed(new Map(Object.entries(far)), () => false)).toBe(false)
    const h = holdingsOf(far, { nearSeed: false })
    expect(h.downloaders).toEqual(['d1'])
    for (let i = 0; i < 100; i++) expect(ownerOf(h, i)).toBe('d1')
    const near = { ...far, seed: holding(HAVE_NONE, 'all') }
    expect(reachesSeed(new Map(Object.entries(near)), () => false)).toBe(true)
    expect(reachesSeed(new Map(Object.entries(near)), peer => peer === 'seed')).toBe(false)
    expect(holdingsOf(near).downloaders).toEqual(['d1', 'me'])
  })

  it('an owner that stops downloading, or goes, hands its share to the rest', () => {
    const h = holdingsOf({ d1: holding(HAVE_DOWNLOADING, [], { lastHeard: NOW - 3_000 }), gone: holding(HAVE_DOWNLOADING, [], { connected: false }), done: holding(HAVE_COMPLETE, 'all') })
    expect(h.downloaders).toEqual(['d1', 'me'])
    let index = 0
    while (ownerOf(h, index) !== 'd1') index++
    expect(ownerSilence(h, index, NOW)).toBe(3_000)
    const alone = holdingsOf({ done: holding(HAVE_COMPLETE, 'all'), gone: holding(HAVE_DOWNLOADING, [], { connected: false }) })
    expect(ownerOf(alone, index)).toBe('me')
    expect(ownerSilence(alone, index, NOW)).toBe(0)
  })

  it('fetches what a reader waits for first, then what downloaders announced, then its own share from seeds', () => {
    const h = holdingsOf({ seed: holding(HAVE_NONE, 'all'), d1: holding(HAVE_DOWNLOADING, [40, 41]) })
    let mine = 0
    while (ownerOf(h, mine) !== 'me') mine++
    const w = wantsOf({ waiting: [mine], cursors: [{ position: mine, last: mine + 10 }], hasReaders: true, available: new Set([40, 41]) })
    expect(pickNext(h, w, SETTINGS, NOW, first)).toMatchObject({ index: mine, peer: 'seed', reason: 'urgent-mine' })
    const afterReader = wantsOf({ available: new Set([40, 41]) })
    const announced = pickNext(h, afterReader, SETTINGS, NOW, first)
    expect(announced).toMatchObject({ peer: 'd1', reason: 'announced' })
    expect([40, 41]).toContain(announced?.index)
    expect(afterReader.available.has(announced!.index)).toBe(false)
    const own = pickNext(h, wantsOf(), SETTINGS, NOW, first)
    expect(own).toMatchObject({ peer: 'seed', reason: 'mine' })
    expect(ownerOf(h, own!.index)).toBe('me')
  })

  it('asks seeds for nothing nobody waits for during the start grace', () => {
    const h = holdingsOf({ seed: holding(HAVE_NONE, 'all') })
    expect(pickNext(h, wantsOf({ started: NOW - 50 }), SETTINGS, NOW, first)).toBeUndefined()
    expect(pickNext(h, wantsOf({ started: NOW - 100 }), SETTINGS, NOW, first)).toMatchObject({ reason: 'mine' })
  })

  it('a waiting reader falls back to a seed once the chunk\'s owner has been silent long enough', () => {
    const quiet = NOW - SETTINGS.urgentFallbackMs
    const peers = { seed: holding(HAVE_NONE, 'all'), d1: holding(HAVE_DOWNLOADING, [], { lastHeard: NOW }) }
    const h = holdingsOf(peers)
    // A chunk d1 owns.
    let index = 0
    while (ownerOf(h, index) !== 'd1') index++
    const waiting = (): Wants => wantsOf({ waiting: [index], hasReaders: true })
    expect(pickNext(h, waiting(), SETTINGS, NOW, first)?.index).not.toBe(index)
    const silent = holdingsOf({ ...peers, d1: holding(HAVE_DOWNLOADING, [], { lastHeard: quiet }) })
    expect(pickNext(silent, waiting(), SETTINGS, NOW, first)).toMatchObject({ index, peer: 'seed', reason: 'urgent-owner-quiet' })
  })

  it('with its own share under way, takes the chunks only seeds hold in image order, whoever owns them', () => {
    const h = holdingsOf({ seed: holding(HAVE_NONE, 'all'), d1: holding(HAVE_DOWNLOADING, [0]) })
    const mine = new Set<number>()
    for (let i = 0; i < N; i++) if (ownerOf(h, i) === 'me') mine.add(i)
    // Our share is in flight; d1 has not asked for its own yet (a slow link from the seed, say),
    // and readers need the front of it first. Chunk 0 is d1's to send us.
    const w = wantsOf({ inflight: mine })
    let front = 1
    while (mine.has(front)) front++
    expect(pickNext(h, w, SETTINGS, NOW, first)).toMatchObject({ index: front, peer: 'seed', reason: 'unclaimed' })
    let next = front + 1
    while (mine.has(next)) next++
    const after = wantsOf({ inflight: new Set([...mine, front]), stealScan: w.stealScan })
    expect(pickNext(h, after, SETTINGS, NOW, first)).toMatchObject({ index: next, reason: 'unclaimed' })
    // Not while the seed's pipeline from us is full.
    const busy = holdingsOf({ seed: holding(HAVE_NONE, 'all'), d1: holding(HAVE_DOWNLOADING, [N - 1]) }, { load: { seed: BACKGROUND_PER_PEER } })
    expect(pickNext(busy, wantsOf({ inflight: mine }), SETTINGS, NOW, first)).toBeUndefined()
  })

  it('downloaders done with their shares take different chunks from the seed: those they rank second for first', () => {
    // Three downloaders; d1's share is not under way yet, so me and d2 (each with its own share in
    // flight) take chunks only the seed holds. Scanning alike, both asked for the same ones, and
    // the seed refused one of each pair (sent elsewhere).
    const peers = { seed: holding(HAVE_NONE, 'all'), d1: holding(HAVE_DOWNLOADING, []), d2: holding(HAVE_DOWNLOADING, []) }
    const views = ['me', 'd2'].map(self => {
      const others = Object.fromEntries(Object.entries({ ...peers, me: holding(HAVE_DOWNLOADING, []) }).filter(([k]) => k !== self))
      const h = holdingsOf(others, { self })
      const own = new Set<number>()
      for (let i = 0; i < N; i++) if (ownerOf(h, i) === self) own.add(i)
      return { self, h, own }
    })
    const taken = views.map(({ self, h, own }) => {
      const picks: number[] = []
      const w = wantsOf({ inflight: own })
      for (let k = 0; k < 4; k++) {
        const pick = pickNext(h, w, SETTINGS, NOW, first)
        expect(pick).toMatchObject({ peer: 'seed', reason: 'unclaimed' })
        if (pick == null) break
        expect(ownerOf(h, pick.index)).not.toBe(self)
        expect(runnerUpOf(h, pick.index)).toBe(self)
        picks.push(pick.index)
        own.add(pick.index)
      }
      return picks
    })
    // In image order, and none asked for by both.
    for (const picks of taken) expect(picks).toEqual([...picks].sort((a, b) => a - b))
    expect(taken[0].filter(i => taken[1].includes(i))).toEqual([])
    // Once none is left that it ranks second for, any, in image order.
    const [{ h, own }] = views
    const rest = new Set(own)
    for (let i = 0; i < N; i++) if (runnerUpOf(h, i) === 'me') rest.add(i)
    const front = [...Array(N).keys()].find(i => !rest.has(i))
    expect(pickNext(h, wantsOf({ inflight: rest }), SETTINGS, NOW, first)).toMatchObject({ index: front, peer: 'seed', reason: 'unclaimed' })
  })

  it('keeps fewer fetches in flight per peer for what nobody waits for than for what a reader waits for', () => {
    const settings = { ...SETTINGS, maxInFlightPerPeer: 8 }
    const h = holdingsOf({ d1: holding(HAVE_DOWNLOADING, [40]), d2: holding(HAVE_DOWNLOADING, []) }, { load: { d1: BACKGROUND_PER_PEER } })
    // Announced by d1, which is busy with our background fetches: wait, it may be announced by another soon.
    expect(pickNext(h, wantsOf({ available: new Set([40]) }), settings, NOW, first)).toBeUndefined()
    // A reader waits for it: d1 is asked, up to maxInFlightPerPeer.
    expect(pickNext(h, wantsOf({ waiting: [40], hasReaders: true, available: new Set([40]) }), settings, NOW, first)).toMatchObject({ index: 40, peer: 'd1', reason: 'urgent' })
  })

  it('with fetchWhole off, fetches nothing once no reader is left', () => {
    const h = holdingsOf({ seed: holding(HAVE_NONE, 'all') })
    expect(pickNext(h, wantsOf(), { ...SETTINGS, fetchWhole: false }, NOW, first)).toBeUndefined()
  })
})
