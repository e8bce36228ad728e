import { describe, expect, it } from 'vitest'
import { parseOrder } from '../src/prefetch-orders.ts'

const bytes = (value: unknown): Uint8Array => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value))

describe('parseOrder', () => {
  it('reads an order for all agents or for named ones', () => {
    expect(parseOrder(bytes({ image: 'i', agents: 'all' }))).toEqual({ image: 'i', agents: 'all' })
    expect(parseOrder(bytes({ image: 'i', agents: ['a', 'b'], extra: 1 }))).toEqual({ image: 'i', agents: ['a', 'b'] })
  })

  it('refuses anything else', () => {
    for (const bad of ['not json', 'null', '[]', { agents: 'all' }, { image: 1, agents: 'all' }, { image: '', agents: 'all' },
      { image: 'x'.repeat(129), agents: 'all' }, { image: 'i' }, { image: 'i', agents: 'some' }, { image: 'i', agents: [] },
      { image: 'i', agents: [1] }, { image: 'i', agents: [''] }, { image: 'i', agents: Array(10_001).fill('a') }]) {
      expect(parseOrder(bytes(bad)), JSON.stringify(bad).slice(0, 40)).toBeUndefined()
    }
  })
})
