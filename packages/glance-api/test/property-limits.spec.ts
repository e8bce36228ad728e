import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAgent } from '@peerglance/testing'
import type { TestAgent } from '@peerglance/testing'
import { glance } from './client.ts'

let agent: TestAgent
let api: ReturnType<typeof glance>

beforeAll(async () => {
  agent = await startAgent()
  api = glance(agent.url)
})
afterAll(async () => { await agent.stop() })

// Glance's columns: image_properties.name VARCHAR(255), value TEXT (65,535 bytes).
describe('extra property limits', () => {
  it('take a 255-character key and a 65,535-byte value, counted in UTF-8 bytes', async () => {
    const key = 'k'.repeat(255)
    const created = await api.create({ [key]: 'v'.repeat(65_535), two_byte: 'é'.repeat(32_767) })
    expect(created.status).toBe(201)
    expect(created.json[key]).toHaveLength(65_535)
  })

  it('refuse a longer key or value with 400 and a Glance-style JSON body, on create and on PATCH, storing nothing', async () => {
    const before = (await api.call('GET', '/v2/images?limit=1000')).json.images.length
    for (const body of [{ ['k'.repeat(256)]: 'v' }, { k: 'v'.repeat(65_536) }, { k: 'é'.repeat(32_768) }]) {
      const r = await api.create(body)
      expect(r.status).toBe(400)
      expect(r.headers.get('content-type')).toContain('application/json')
      expect(r.json.message ?? r.json.badRequest?.message ?? r.text).toMatch(/too long \(maximum is (255 characters|65535 bytes)\)/)
    }
    expect((await api.call('GET', '/v2/images?limit=1000')).json.images.length).toBe(before)

    const { json: image } = await api.create({ name: 'patched', kept: 'original' })
    const patch = await api.patch(image.id, [{ op: 'replace', path: '/kept', value: 'x' }, { op: 'add', path: '/big', value: 'v'.repeat(65_536) }])
    expect(patch.status).toBe(400)
    expect(patch.text).toContain('65535 bytes')
    const after = (await api.call('GET', `/v2/images/${image.id}`)).json
    expect(after.kept).toBe('original')
    expect(after.big).toBeUndefined()
  })
})
