import { describe, expect, it } from 'vitest'
import { bytesToFree, evictionOrder } from '../src/eviction.ts'

describe('bytesToFree', () => {
  it('frees nothing up to the high watermark, then down to the low one', () => {
    expect(bytesToFree({ used: 900, max: 1000, high: 0.9, low: 0.75 })).toBe(0)
    expect(bytesToFree({ used: 901, max: 1000, high: 0.9, low: 0.75 })).toBe(151)
    expect(bytesToFree({ used: 2000, max: 1000, high: 0.9, low: 0.75 })).toBe(1250)
  })
})

describe('evictionOrder', () => {
  it('puts the least recently read first and leaves pinned images out', () => {
    const order = evictionOrder([
      { imageId: 'b', bytes: 1, lastAccessed: 30, pinned: false },
      { imageId: 'a', bytes: 1, lastAccessed: 10, pinned: false },
      { imageId: 'p', bytes: 1, lastAccessed: 0, pinned: true },
      { imageId: 'c', bytes: 1, lastAccessed: 10, pinned: false }
    ])
    expect(order.map(c => c.imageId)).toEqual(['a', 'c', 'b'])
  })
})
