import { describe, expect, it } from 'vitest'
import type { ImageRecord } from '@peerglance/interface'
import { canTransition, transition } from '../src/status.ts'
import { parsePatch } from '../src/patch.ts'
import { compareBy, parseListQuery } from '../src/list-query.ts'
import { imageView } from '../src/view.ts'

const LIMITS = { limitParamDefault: 25, apiLimitMax: 1000 }

function image (over: Partial<ImageRecord> = {}): ImageRecord {
  return {
    id: '11111111-1111-1111-1111-111111111111', name: 'x', status: 'active', visibility: 'private', protected: false, os_hidden: false,
    owner: 'alice', checksum: null, os_hash_algo: null, os_hash_value: null, size: 10, virtual_size: null,
    container_format: 'bare', disk_format: 'raw', min_ram: 0, min_disk: 0, tags: [], created_at: '2026-01-01T00:00:00Z',
    updated_at: '2026-01-01T00:00:00Z', properties: {}, ...over
  }
}

describe('status table', () => {
  it('allows exactly the transitions Glance allows', () => {
    expect(canTransition('queued', 'saving')).toBe(true)
    expect(canTransition('saving', 'queued')).toBe(true)
    expect(canTransition('active', 'queued')).toBe(false)
    expect(canTransition('deactivated', 'saving')).toBe(false)
    expect(canTransition('deleted', 'active')).toBe(false)
    expect(() => transition(image({ status: 'active' }), 'saving')).toThrow(expect.objectContaining({ name: 'InvalidStatusTransitionError' }))
  })

  it('forgets size and hashes when an image goes back to queued', () => {
    const back = transition(image({ status: 'saving', size: 5, checksum: 'c', os_hash_value: 'h' }), 'queued')
    expect(back).toMatchObject({ status: 'queued', size: null, checksum: null, os_hash_value: null })
  })
})

describe('patch parsing', () => {
  it('reads both dialects into the same changes', () => {
    expect(parsePatch([{ op: 'replace', path: '/name', value: 'a' }], '2.1')).toEqual([{ op: 'replace', path: '/name', value: 'a' }])
    expect(parsePatch([{ replace: '/name', value: 'a' }], '2.0')).toEqual([{ op: 'replace', path: '/name', value: 'a' }])
    expect(parsePatch([{ op: 'remove', path: '/a~1b' }], '2.1')).toEqual([{ op: 'remove', path: '/a/b' }])
  })
  it.each([
    [[{ op: 'test', path: '/name', value: 'a' }], 'ValidationError'],
    [[{ add: '/a', replace: '/b', value: 1 }], 'ValidationError'],
    [[{ op: 'add', path: '/a//b', value: 1 }], 'ValidationError'],
    [[{ op: 'add', path: '/a~2', value: 1 }], 'ValidationError'],
    [[{ op: 'replace', path: '/checksum', value: 1 }], 'ReadOnlyPropertyError'],
    [[{ op: 'add', path: '/os_glance_x', value: 1 }], 'ReservedPropertyError']
  ])('refuses %j', (body, name) => {
    expect(() => parsePatch(body, body[0] != null && 'op' in body[0] ? '2.1' : '2.0')).toThrow(expect.objectContaining({ name }))
  })
})

describe('list query', () => {
  it('defaults to created_at desc then id, limit 25', () => {
    const q = parseListQuery({}, LIMITS)
    expect(q.limit).toBe(25)
    expect(q.sort).toEqual([{ key: 'created_at', dir: 'desc' }, { key: 'id', dir: 'desc' }])
  })
  it('caps the limit at api_limit_max', () => {
    expect(parseListQuery({ limit: '5000' }, LIMITS).limit).toBe(1000)
  })
  it('parses sort= with default desc and appends the tie-breakers', () => {
    expect(parseListQuery({ sort: 'name:asc,size' }, LIMITS).sort).toEqual([
      { key: 'name', dir: 'asc' }, { key: 'size', dir: 'desc' }, { key: 'created_at', dir: 'desc' }, { key: 'id', dir: 'desc' }
    ])
  })
  it('matches in: lists with quoted commas', () => {
    const q = parseListQuery({ name: 'in:"a,b",c' }, LIMITS)
    expect(q.filters[0](image({ name: 'a,b' }))).toBe(true)
    expect(q.filters[0](image({ name: 'c' }))).toBe(true)
    expect(q.filters[0](image({ name: 'a' }))).toBe(false)
  })
  it('compares times with operators', () => {
    const q = parseListQuery({ created_at: 'gte:2026-01-01T00:00:00Z', updated_at: 'lt:2026-01-01T00:00:00Z' }, LIMITS)
    expect(q.filters[0](image())).toBe(true)
    expect(q.filters[1](image())).toBe(false)
  })
  it('sorts nulls first ascending', () => {
    const order = compareBy([{ key: 'name', dir: 'asc' }])
    expect([image({ name: 'b' }), image({ name: null }), image({ name: 'a' })].sort(order).map(i => i.name)).toEqual([null, 'a', 'b'])
  })
})

describe('view', () => {
  it('flattens extra properties, hides internal ones and renders null extras as ""', () => {
    const view = imageView(image({ properties: { hw_disk_bus: 'scsi', os_glance_stage_host: 'h', empty: null, kernel_id: null } }))
    expect(view).toMatchObject({ hw_disk_bus: 'scsi', empty: '', kernel_id: null, self: '/v2/images/11111111-1111-1111-1111-111111111111' })
    expect(view).not.toHaveProperty('os_glance_stage_host')
    expect(view).not.toHaveProperty('properties')
  })
})
