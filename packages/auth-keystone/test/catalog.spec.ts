import { describe, expect, it } from 'vitest'
import { catalogEndpoint } from '../src/catalog.ts'

const catalog = [
  { type: 'identity', endpoints: [{ interface: 'public', region_id: 'RegionOne', url: 'http://id.example/v3/' }] },
  {
    type: 'image',
    endpoints: [
      { interface: 'public', region_id: 'RegionOne', url: 'https://glance.example/' },
      { interface: 'internal', region_id: 'RegionOne', url: 'http://glance.internal:9292' },
      { interface: 'internal', region: 'RegionTwo', url: 'http://glance.two:9292' },
      { interface: 'admin', region_id: 'RegionThree' }
    ]
  }
]

describe('catalogEndpoint', () => {
  it('takes the first interface asked for that the region has, without a trailing slash', () => {
    expect(catalogEndpoint(catalog, { type: 'image', region: 'RegionOne', interfaces: ['internal', 'public'] })).toBe('http://glance.internal:9292')
    expect(catalogEndpoint(catalog, { type: 'image', region: 'RegionOne', interfaces: ['public'] })).toBe('https://glance.example')
    expect(catalogEndpoint(catalog, { type: 'identity', region: 'RegionOne', interfaces: ['internal', 'public'] })).toBe('http://id.example/v3')
  })

  it('matches the region by region_id or the older region, without case', () => {
    expect(catalogEndpoint(catalog, { type: 'image', region: 'regiontwo', interfaces: ['internal'] })).toBe('http://glance.two:9292')
  })

  it('finds nothing for another region, interface or type, nor an endpoint without a URL', () => {
    expect(catalogEndpoint(catalog, { type: 'image', region: 'RegionTwo', interfaces: ['public'] })).toBeUndefined()
    expect(catalogEndpoint(catalog, { type: 'image', region: 'RegionThree', interfaces: ['admin'] })).toBeUndefined()
    expect(catalogEndpoint(catalog, { type: 'volume', region: 'RegionOne', interfaces: ['public'] })).toBeUndefined()
    expect(catalogEndpoint([], { type: 'image', region: 'RegionOne', interfaces: ['public'] })).toBeUndefined()
  })
})
