import { describe, expect, it } from 'vitest'
import type { Logger, PeerId } from '@libp2p/interface'
import type { ChunkBlocks, Manifest } from '@peerglance/interface'
import { plainRef } from '../src/chunk-ref.ts'
import type { ChunkRef } from '../src/chunk-ref.ts'
import { NotHeldError, RequestTimeoutError, SentElsewhereError } from '../src/errors.ts'
import { HAVE_COMPLETE, HAVE_DOWNLOADING, HAVE_NONE } from '../src/framing.ts'
import type { HaveAnswer } from '../src/chunk-exchange.ts'
import { Session } from '../src/session.ts'
import type { Clock, SessionHost, SessionSettings } from '../src/session.ts'

/**
 * A download session on a clock the test moves, with a host whose peers answer as each test says:
 * the waits that decide whether a reader gets its chunk or "no peer holds it" (the seeding.spec
 * failures under load) without a loaded machine.
 */

const SETTINGS: SessionSettings = {
  readAhead: 8,
  startGraceMs: 100,
  urgentFallbackMs: 5_000,
  backgroundFallbackMs: 15_000,
  maxInFlightPerPeer: 8,
  fetchWhole: false,
  maxInFlight: 16,
  unavailableTimeoutMs: 10_000,
  announceIntervalMs: 150
}

const SILENT = Object.assign(() => {}, { enabled: false, error: () => {}, trace: () => {}, newScope: () => SILENT }) as unknown as Logger

class ManualClock implements Clock {
  time = 0
  readonly #timers = new Set<{ ms: number, next: number, fn: () => void }>()

  now = (): number => this.time

  every (ms: number, fn: () => void): () => void {
    const timer = { ms, next: this.time + ms, fn }
    this.#timers.add(timer)
    return () => { this.#timers.delete(timer) }
  }

  /** Moves time on in 50 ms steps, firing timers and letting promises settle after each. */
  async advance (ms: number): Promise<void> {
    const end = this.time + ms
    while (this.time < end) {
      this.time = Math.min(end, this.time + 50)
      for (const timer of [...this.#timers]) {
        if (timer.next > this.time) continue
        timer.next += timer.ms
        timer.fn()
      }
      await new Promise(resolve => setImmediate(resolve))
    }
  }
}

function peerId (name: string): PeerId {
  return { toString: () => name } as unknown as PeerId
}

type Fetcher = (cid: string, peer: string) => Promise<ChunkRef>

interface Told { peer: string, state: number, indices: number[] }

function sessionOf (peers: string[], answers: { have: (peer: string) => Promise<HaveAnswer>, fetch: Fetcher }, chunks = 2): { session: Session, clock: ManualClock, fetches: string[], told: Told[] } {
  const clock = new ManualClock()
  const fetches: string[] = []
  const told: Told[] = []
  const load = new Map<string, number>()
  const blocks: ChunkBlocks = {
    has: async () => false,
    readChunk: async () => { throw Object.assign(new Error('not here'), { name: 'ChunkUnavailableError' }) },
    putChunk: async () => {}
  }
  const host: SessionHost = {
    self: 'me',
    settings: SETTINGS,
    clock,
    signal: new AbortController().signal,
    log: SILENT,
    blocks,
    metrics: { hit () {}, miss () {}, imageReceived () {} },
    connectedPeers: () => peers.map(peerId),
    fetch: (cid, peer) => {
      fetches.push(`${cid}@${peer}`)
      load.set(peer, (load.get(peer) ?? 0) + 1)
      const promise = answers.fetch(cid, peer)
      const done = (): void => { load.set(peer, (load.get(peer) ?? 1) - 1) }
      promise.then(done, done)
      return { promise, shared: false }
    },
    have: async peer => await answers.have(peer.toString()),
    announce: (peer, key, note) => { told.push({ peer: peer.toString(), state: note.state, indices: [...note.indices] }) },
    isBad: () => false,
    markBad: () => {},
    load: peer => load.get(peer) ?? 0,
    checkReachable: () => {},
    dropSession: () => {}
  }
  const manifest = { size: chunks * 1024, chunkSize: 1024, cids: Array.from({ length: chunks }, (_, i) => `c${i}`) } as unknown as Manifest
  const session = new Session(host, 'image', 'key', manifest)
  session.begin()
  return { session, clock, fetches, told }
}

const BYTES = new Uint8Array(1024)
const BOTH = new Uint8Array([0xc0])

/** Settles to the outcome of the read, whatever it is. */
function outcome (read: Promise<ChunkRef>): { value?: ChunkRef, error?: Error } {
  const result: { value?: ChunkRef, error?: Error } = {}
  read.then(value => { result.value = value }, (error: Error) => { result.error = error })
  return result
}

describe('download session: waits for a chunk', () => {
  it('a reader waits out a slow seed\'s timed-out request and gets the chunk from it, rather than "no peer holds it"', async () => {
    let attempts = 0
    const { session, clock, fetches } = sessionOf(['seed'], {
      have: async () => ({ state: HAVE_NONE, nearSeed: false, bits: BOTH }),
      fetch: async () => {
        // The only holder, alive but overloaded: its first answer comes too late.
        if (attempts++ === 0) throw new RequestTimeoutError('seed did not answer within 15000 ms')
        return plainRef(BYTES)
      }
    })
    await session.scanning
    const read = outcome(session.chunk(0))
    await clock.advance(SETTINGS.unavailableTimeoutMs + 5_000)
    expect(read.error).toBeUndefined()
    expect(read.value?.bytes.byteLength).toBe(1024)
    expect(fetches.filter(f => f === 'c0@seed')).toHaveLength(2)
    await session.close(new Error('done'))
  })

  it('a seed that sent the chunk to another downloader stays a holder: the reader waits for that one to announce it', async () => {
    let haves = 0
    const { session, clock, fetches } = sessionOf(['seed', 'd1'], {
      have: async peer => {
        // Under load, HAVE answers after the first ones time out: the session cannot learn again
        // that the seed holds the chunk.
        if (haves++ >= 2) throw new RequestTimeoutError('HAVE timed out')
        return peer === 'seed' ? { state: HAVE_NONE, nearSeed: false, bits: BOTH } : { state: HAVE_DOWNLOADING, nearSeed: true, bits: new Uint8Array(1) }
      },
      fetch: async (cid, peer) => {
        if (peer === 'seed') throw new SentElsewhereError('seed sent it to another downloader lately')
        return plainRef(BYTES)
      }
    })
    await session.scanning
    const read = outcome(session.chunk(0))
    await clock.advance(SETTINGS.unavailableTimeoutMs + 2_000)
    expect(read.error).toBeUndefined()
    expect(fetches).toContain('c0@seed')
    // d1, which the seed served, announces the chunk: the reader gets it from d1.
    session.heard(peerId('d1'), { state: HAVE_DOWNLOADING, nearSeed: true, total: 2, indices: [0] })
    await clock.advance(500)
    expect(read.error).toBeUndefined()
    expect(read.value?.bytes.byteLength).toBe(1024)
    expect(fetches).toContain('c0@d1')
    await session.close(new Error('done'))
  })

  it('a member that claims a chunk and never sends it keeps a reader waiting only for a few tries, not for ever', async () => {
    const { session, clock, fetches } = sessionOf(['liar'], {
      have: async () => ({ state: HAVE_NONE, nearSeed: false, bits: BOTH }),
      fetch: async () => { throw new RequestTimeoutError('liar did not answer within 15000 ms') }
    })
    await session.scanning
    session.readers = 1 // an HTTP reader streaming the image: the session does not give up by itself
    const read = outcome(session.chunk(0))
    await clock.advance(60_000)
    expect(read.error?.name).toBe('ChunkUnavailableError')
    expect(read.error?.message).toMatch(/in 3 tries/)
    expect(fetches.filter(f => f === 'c0@liar')).toHaveLength(3)
    await session.close(new Error('done'))
  })

  it('a peer that does not hold the chunk is no holder: with no other, the reader gets "no peer holds it" in time', async () => {
    const { session, clock } = sessionOf(['seed'], {
      have: async () => ({ state: HAVE_NONE, nearSeed: false, bits: new Uint8Array(1) }),
      fetch: async () => { throw new NotHeldError('not here') }
    })
    await session.scanning
    const read = outcome(session.chunk(0))
    await clock.advance(SETTINGS.unavailableTimeoutMs + 1_000)
    expect(read.error?.name).toBe('ChunkUnavailableError')
    await session.close(new Error('done'))
  })
})

describe('download session: what it announces', () => {
  it('a downloader that holds every chunk of a batch is not sent it; one that lacks any is, and everyone hears the image complete', async () => {
    // d1 holds c0..c2 (it is where they come from), d2 nothing; only the seed holds c3.
    const { session, clock, told } = sessionOf(['seed', 'd1', 'd2'], {
      have: async peer => peer === 'seed'
        ? { state: HAVE_NONE, nearSeed: false, bits: new Uint8Array([0xf0]) }
        : { state: HAVE_DOWNLOADING, nearSeed: false, bits: new Uint8Array([peer === 'd1' ? 0xe0 : 0]) },
      fetch: async () => plainRef(BYTES)
    }, 4)
    await session.scanning
    for (let i = 0; i < 4; i++) {
      const chunk = await session.chunk(i)
      chunk.release()
      await clock.advance(200)
    }
    expect(session.complete).toBe(true)
    const to = (peer: string): Told[] => told.filter(t => t.peer === peer)
    // d2 hears of every chunk.
    expect(new Set(to('d2').flatMap(t => t.indices))).toEqual(new Set([0, 1, 2, 3]))
    // d1 hears of the one it lacks, and of nothing it holds but with news (its first message, c3, the state).
    expect(to('d1').flatMap(t => t.indices)).toContain(3)
    for (const t of to('d1').slice(1)) {
      if (t.state !== HAVE_COMPLETE) expect(t.indices.some(i => i === 3)).toBe(true)
    }
    expect(to('d1').length).toBeLessThan(to('d2').length)
    expect(to('d1').at(-1)?.state).toBe(HAVE_COMPLETE)
    expect(to('d2').at(-1)?.state).toBe(HAVE_COMPLETE)
    await session.close(new Error('done'))
  })
})
