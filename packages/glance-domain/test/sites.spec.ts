import { describe, expect, it } from 'vitest'
import type { ImageRecord, TaskRecord } from '@peerglance/interface'
import { replicationRules } from '../src/replication.ts'
import { SITE_PROPERTY_PREFIX, storeFields, withSite } from '../src/sites.ts'
import { imageView } from '../src/view.ts'

const RULES = replicationRules({
  limitParamDefault: 25, apiLimitMax: 1000, imagePropertyQuota: 128, imageTagQuota: 128, imageMemberQuota: 128, imageSizeCap: 2 ** 40,
  userStorageQuota: 0, diskFormats: ['raw', 'qcow2'], containerFormats: ['bare'], enabledImportMethods: ['glance-direct'], requireImageFormatMatch: true
})

function image (over: Partial<ImageRecord> = {}): ImageRecord {
  return {
    id: '11111111-1111-1111-1111-111111111111', name: 'x', status: 'active', visibility: 'private', protected: false, os_hidden: false,
    owner: 'alice', checksum: null, os_hash_algo: null, os_hash_value: null, size: 10, virtual_size: null,
    container_format: 'bare', disk_format: 'raw', min_ram: 0, min_disk: 0, tags: [], created_at: '2026-01-01T00:00:00Z',
    updated_at: '2026-01-01T00:00:00Z', properties: {}, ...over
  }
}

describe('sites on an image', () => {
  it('shows Glance\'s store fields derived from the per-site properties, and hides the properties', () => {
    let placed = withSite(withSite(withSite(image(), 'west', 'active'), 'east', 'active'), 'north', 'importing')
    placed = withSite(placed, 'south', 'failed')
    const view = imageView(placed)
    expect(view).toMatchObject({ stores: 'east,west', os_glance_importing_to_stores: 'north', os_glance_failed_import: 'south' })
    expect(Object.keys(view).some(k => k.startsWith(SITE_PROPERTY_PREFIX))).toBe(false)
    expect(storeFields(image())).toEqual({})
    expect(storeFields(withSite(placed, 'north', undefined))).toMatchObject({ os_glance_importing_to_stores: '' })
  })

  it('refuses, on merge, site properties an agent would never write', () => {
    expect(RULES.imageRefusal(withSite(image(), 'east', 'active'), undefined)).toBeUndefined()
    expect(RULES.imageRefusal(image({ properties: { [`${SITE_PROPERTY_PREFIX}east`]: 'stolen' } }), undefined)).toMatch(/state/)
    expect(RULES.imageRefusal(image({ properties: { [`${SITE_PROPERTY_PREFIX}../etc`]: 'active' } }), undefined)).toMatch(/not a site name/)
    const many = Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`${SITE_PROPERTY_PREFIX}s${i}`, 'importing']))
    expect(RULES.imageRefusal(image({ properties: many }), undefined)).toMatch(/257 sites/)
  })
})

describe('task records from peers', () => {
  const task: TaskRecord = {
    id: '22222222-2222-2222-2222-222222222222', type: 'api_image_import', status: 'success', owner: 'alice', image_id: '11111111-1111-1111-1111-111111111111',
    request_id: 'req-1', user_id: 'u', input: { import_req: { method: { name: 'glance-direct' } } }, result: { image_id: 'x' }, message: '',
    created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z', expires_at: null
  }

  it('are merged when well-formed and refused otherwise', () => {
    expect(RULES.taskRefusal(task)).toBeUndefined()
    expect(RULES.taskRefusal({ ...task, status: 'done' as TaskRecord['status'] })).toMatch(/status/)
    expect(RULES.taskRefusal({ ...task, type: 'shell' as TaskRecord['type'] })).toMatch(/type/)
    expect(RULES.taskRefusal({ ...task, input: { blob: 'x'.repeat(70_000) } })).toMatch(/64 KiB/)
    expect(RULES.taskRefusal({ ...task, id: 'not-a-uuid' })).toMatch(/UUID/)
    expect(RULES.taskRefusal({ ...task, expires_at: 'tomorrow' })).toMatch(/expires_at/)
  })
})
