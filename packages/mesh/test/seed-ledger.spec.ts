import { describe, expect, it } from 'vitest'
import { SeedLedger } from '../src/seed-ledger.ts'

describe('seed ledger', () => {
  it('a seed sends a chunk as a first fetch once, to whoever asks first, until the entry expires', () => {
    const ledger = new SeedLedger(1_000)
    expect(ledger.claim('c1', 'a', 0)).toBe(true)
    expect(ledger.claim('c1', 'b', 10)).toBe(false)
    // The same downloader again (its transfer failed) is served.
    expect(ledger.claim('c1', 'a', 20)).toBe(true)
    expect(ledger.claim('c2', 'b', 30)).toBe(true)
    expect(ledger.claim('c1', 'b', 1_020)).toBe(true)
  })

  it('the others wait from when the chunk left for its first downloader, not from when it was asked for', () => {
    const ledger = new SeedLedger(1_000)
    expect(ledger.claim('c', 'a', 0)).toBe(true)
    // Queued behind other answers for 900 ms before it was handed to a's connection.
    ledger.sent('c', 'a', 900)
    expect(ledger.claim('c', 'b', 1_500)).toBe(false)
    expect(ledger.claim('c', 'b', 1_900)).toBe(true)
    // Another peer's send does not move b's claim.
    ledger.sent('c', 'a', 2_500)
    expect(ledger.claim('c', 'a', 2_600)).toBe(false)
  })

  it('chunks sent to a peer that went away are served again', () => {
    const ledger = new SeedLedger()
    expect(ledger.claim('c', 'a', 0)).toBe(true)
    expect(ledger.claim('d', 'b', 0)).toBe(true)
    ledger.releasePeer('a')
    expect(ledger.claim('c', 'b', 1)).toBe(true)
    expect(ledger.claim('d', 'c', 1)).toBe(false)
  })

  it('a failed send is released, and the ledger stays bounded', () => {
    const ledger = new SeedLedger(60_000, 100)
    expect(ledger.claim('c', 'a', 0)).toBe(true)
    ledger.release('c')
    expect(ledger.claim('c', 'b', 1)).toBe(true)
    for (let i = 0; i < 1_000; i++) ledger.claim(`x${i}`, 'a', 2)
    expect(ledger.size).toBeLessThanOrEqual(100)
  })
})
