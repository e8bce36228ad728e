import { describe, expect, it } from 'vitest'
import { TokenCache } from '../src/token-cache.ts'

describe('TokenCache', () => {
  it('keeps an entry no longer than its ttl and, unless expired tokens are allowed, its expiry', () => {
    const cache = new TokenCache<string>(10_000, 10)
    cache.set('a', 'alice', 5_000, 0)
    expect(cache.get('a', { allowExpired: false, now: 4_999 })).toBe('alice')
    expect(cache.get('a', { allowExpired: false, now: 5_000 })).toBeUndefined()
    expect(cache.get('a', { allowExpired: true, now: 9_999 })).toBe('alice')
    expect(cache.get('a', { allowExpired: true, now: 10_000 })).toBeUndefined()
    expect(cache.size).toBe(0)
  })

  it('is bounded, dropping the oldest entry first, and holds nothing at ttl 0', () => {
    const cache = new TokenCache<number>(60_000, 3)
    for (let i = 0; i < 5; i++) cache.set(`t${i}`, i, 1e12, 0)
    expect(cache.size).toBe(3)
    expect(cache.get('t0', { allowExpired: false, now: 1 })).toBeUndefined()
    expect(cache.get('t4', { allowExpired: false, now: 1 })).toBe(4)
    const none = new TokenCache<number>(0, 3)
    none.set('t', 1, 1e12, 0)
    expect(none.size).toBe(0)
  })
})
