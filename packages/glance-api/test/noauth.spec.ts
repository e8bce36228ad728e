import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAgent } from '@peerglance/testing'
import type { TestAgent } from '@peerglance/testing'
import { asProject, glance } from './client.ts'

let agent: TestAgent
let api: ReturnType<typeof glance>

beforeAll(async () => {
  agent = await startAgent()
  api = glance(agent.url)
})
afterAll(async () => { await agent.stop() })

describe('noauth', () => {
  it('gives a request that names a project but no X-Roles no roles, so it is not admin (issue 7)', async () => {
    const owner = asProject('project-a')
    const created = await api.create({ name: 'a-private' }, owner)
    expect(created.status).toBe(201)
    const id = created.json.id as string
    await api.upload(id, Buffer.from('secret bytes'), owner)

    // Project C without X-Roles: before, it listed, downloaded, patched and deactivated A's image.
    const intruder = { 'x-project-id': 'project-c' }
    // Secure RBAC: listing needs the reader role, which a roleless caller lacks.
    const list = await api.call('GET', '/v2/images', { headers: intruder })
    expect(list.status).toBe(403)
    expect(list.text).not.toContain(id)
    const reader = await api.call('GET', '/v2/images', { headers: { ...intruder, 'x-roles': 'reader' } })
    expect(reader.json.images.map((i: { id: string }) => i.id)).not.toContain(id)
    expect((await api.call('GET', `/v2/images/${id}`, { headers: intruder })).status).toBe(404)
    const download = await api.download(id, intruder)
    expect(download.status).toBe(404)
    expect(download.bytes.toString()).not.toContain('secret')
    expect((await api.patch(id, [{ op: 'replace', path: '/name', value: 'pwned' }], '2.1', intruder)).status).toBe(404)
    expect((await api.call('POST', `/v2/images/${id}/actions/deactivate`, { headers: intruder })).status).toBe(404)
    // X-Tenant-Id, the older header, names a project just the same.
    expect((await api.call('GET', `/v2/images/${id}`, { headers: { 'x-tenant-id': 'project-c' } })).status).toBe(404)

    const after = await api.call('GET', `/v2/images/${id}`, { headers: owner })
    expect(after.json).toMatchObject({ name: 'a-private', status: 'active' })
  })

  it('keeps the configured identity (admin) for a request with no identity header at all', async () => {
    const created = await api.create({ name: 'headerless' })
    expect(created.status).toBe(201)
    expect(created.json.owner).toBe('admin')
    expect((await api.call('GET', '/peerglance/v1/status')).status).toBe(200)
  })

  it('shows the ops endpoints to admins only', async () => {
    for (const path of ['/peerglance/v1/status', '/metrics']) {
      const refused = await api.call('GET', path, { headers: asProject('project-a', 'member,reader') })
      expect(refused.status).toBe(403)
      expect(refused.text).not.toContain('a-private')
      expect((await api.call('GET', path, { headers: asProject('project-a', 'admin') })).status).toBe(200)
    }
  })
})

describe('noauth with policy.enforceScope', () => {
  it('reads a token\'s scope from OpenStack-System-Scope and X-Domain-Id, as oslo.context does', async () => {
    const scoped = await startAgent({ config: { policy: { enforceScope: true } } })
    try {
      const api = glance(scoped.url)
      const created = await api.create({ name: 'scoped' }, { 'x-project-id': 'p1', 'x-roles': 'admin' })
      expect(created.status).toBe(201)
      const id = created.json.id as string
      for (const scope of [{ 'openstack-system-scope': 'all' }, { 'x-domain-id': 'default' }] as Array<Record<string, string>>) {
        const headers = { 'x-roles': 'admin', 'x-user-id': 'cloud-admin', ...scope }
        expect((await api.call('GET', '/v2/images', { headers })).status).toBe(403)
        expect((await api.call('GET', `/v2/images/${id}`, { headers })).status).toBe(404)
      }
      // The same admin with a project-scoped token is an admin like any other.
      expect((await api.call('GET', `/v2/images/${id}`, { headers: { 'x-project-id': 'p2', 'x-roles': 'admin' } })).status).toBe(200)
    } finally {
      await scoped.stop()
    }
  })
})
