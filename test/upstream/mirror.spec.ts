import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { meshOf, tmpDir, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { keystoneEnv } from '../keystone/keystone.ts'
import { asProject } from '../clients/cli.ts'
import { upstreamCli, upstreamConfig, upstreamFetch } from './upstream.ts'

let dir: string
let mesh: TestMesh

beforeAll(async () => {
  dir = await tmpDir('peerglance-upstream-')
  await mkdir(join(dir, 'home'), { recursive: true })
  const config = await upstreamConfig(dir, { pollers: 1 })
  mesh = await meshOf(2, { args: ['--config', config] })
})

afterAll(async () => {
  await mesh?.close()
  if (dir != null) await rm(dir, { recursive: true, force: true })
})

async function show (url: string, id: string, headers: Record<string, string> = {}): Promise<Response> {
  return await fetch(`${url}/v2/images/${id}`, { headers })
}

describe('an existing Glance as the origin: metadata', () => {
  it('is polled by one agent of the two (upstream.pollers: 1), the other receiving the records by replication', async () => {
    const metrics = async (name: string): Promise<number[]> => await Promise.all(mesh.agents.map(async agent => {
      const text = await (await fetch(`${agent.url}/metrics`)).text()
      return Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1])
    }))
    const refreshes = async (): Promise<number[]> => await metrics('peerglance_upstream_refreshes')
    // At start each agent knows no other and polls once; that is over once both heard a refresh.
    await waitFor(async () => (await metrics('peerglance_upstream_last_refresh_seconds')).every(t => t > 0), { timeoutMs: 20_000 })
    await sleep(2000)
    const before = await refreshes()
    await sleep(4000)
    const after = await refreshes()
    const grew = after.map((n, i) => n - before[i])
    // Exactly one agent polled meanwhile (interval 1 s), the other not once.
    expect(grew.filter(n => n > 0)).toHaveLength(1)
    expect(grew.filter(n => n === 0)).toHaveLength(1)
  })

  it('an image created upstream with openstack appears on every agent with its owner, visibility, data fields and members; policy applies; deleted upstream, it is gone everywhere', async () => {
    const env = keystoneEnv()
    const member = env.accounts['alpha-member']
    const cli = upstreamCli(member, join(dir, 'home'))
    const file = join(dir, 'image.raw')
    await writeFile(file, randomBytes(1024 * 1024 + 5))
    const created = JSON.parse(await cli.ok(['image', 'create', '--disk-format', 'raw', '--container-format', 'bare', '--property', 'os_distro=cirros', '--file', file, '-f', 'json', 'upstream-mirror'])) as { id: string }
    const upstream = await (await upstreamFetch(member, `/v2/images/${created.id}`)).json() as Record<string, unknown>
    expect(upstream.status).toBe('active')

    for (const agent of mesh.agents) {
      // A poll during the upload mirrors it as the upstream showed it then (saving, no size yet):
      // the agent shows the upstream's image once a poll saw it active.
      const image = await waitFor(async () => {
        const res = await show(agent.url, created.id)
        const shown = res.status === 200 ? await res.json() as Record<string, unknown> : undefined
        return shown?.status === 'active' ? shown : undefined
      }, { timeoutMs: 20_000 })
      for (const key of ['name', 'owner', 'visibility', 'size', 'checksum', 'os_hash_algo', 'os_hash_value', 'disk_format', 'container_format', 'os_distro', 'created_at', 'status']) {
        expect(image[key], key).toEqual(upstream[key])
      }
      // The mark stays hidden, as Glance's own os_glance_* bookkeeping.
      expect(Object.keys(image).filter(k => k.startsWith('os_glance'))).toEqual([])
      // Policy applies as upstream: the owner's members see it, another project does not.
      expect((await show(agent.url, created.id, asProject(env.projects.alpha, 'member'))).status).toBe(200)
      expect((await show(agent.url, created.id, asProject(env.projects.beta, 'member'))).status).toBe(404)
    }

    // Shared upstream with beta: the membership and its status reach the mesh; beta sees it.
    const share = await upstreamFetch(member, `/v2/images/${created.id}/members`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ member: env.projects.beta }) })
    expect(share.status).toBe(200)
    const accept = await upstreamFetch(env.accounts['beta-member'], `/v2/images/${created.id}/members/${env.projects.beta}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: 'accepted' }) })
    expect(accept.status).toBe(200)
    for (const agent of mesh.agents) {
      await waitFor(async () => {
        const members = await (await fetch(`${agent.url}/v2/images/${created.id}/members`)).json() as { members: Array<{ member_id: string, status: string }> }
        return JSON.stringify(members.members.map(m => [m.member_id, m.status])) === JSON.stringify([[env.projects.beta, 'accepted']])
      }, { timeoutMs: 20_000 })
      const listed = await (await fetch(`${agent.url}/v2/images`, { headers: asProject(env.projects.beta, 'member') })).json() as { images: Array<{ id: string }> }
      expect(listed.images.map(i => i.id)).toContain(created.id)
    }

    // Renamed upstream: the new name everywhere.
    await cli.ok(['image', 'set', '--name', 'upstream-renamed', created.id])
    for (const agent of mesh.agents) {
      await waitFor(async () => (await (await show(agent.url, created.id)).json() as { name?: string }).name === 'upstream-renamed', { timeoutMs: 20_000 })
    }

    await cli.ok(['image', 'delete', created.id])
    for (const agent of mesh.agents) {
      await waitFor(async () => (await show(agent.url, created.id)).status === 404, { timeoutMs: 20_000 })
    }
  })
})

describe('upstream.writes: read-only (the default)', () => {
  it('refuses writes to upstream images with 403 (404 to those who cannot see them), changes nothing upstream, and still takes images of the mesh\'s own', async () => {
    const env = keystoneEnv()
    const member = env.accounts['alpha-member']
    const res = await upstreamFetch(member, '/v2/images', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'read-only', disk_format: 'raw', container_format: 'bare', visibility: 'community', os_hidden: true }) })
    const { id } = await res.json() as { id: string }
    const agent = mesh.agents[0]
    // Community and hidden: Glance lists such images only when asked for them, and the mirror asks.
    await waitFor(async () => (await show(agent.url, id)).status === 200, { timeoutMs: 20_000 })
    const patch = { method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' }, body: JSON.stringify([{ op: 'replace', path: '/name', value: 'changed' }]) }
    const writes: Array<[string, RequestInit]> = [
      [`/v2/images/${id}`, patch],
      [`/v2/images/${id}`, { method: 'DELETE' }],
      [`/v2/images/${id}/tags/t1`, { method: 'PUT' }],
      [`/v2/images/${id}/members`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ member: env.projects.beta }) }],
      [`/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: 'bytes' }],
      [`/v2/images/${id}/actions/deactivate`, { method: 'POST' }]
    ]
    for (const [path, init] of writes) {
      const answer = await fetch(`${agent.url}${path}`, init)
      const text = await answer.text()
      expect([init.method, path, answer.status, text]).toEqual([init.method, path, 403, expect.stringContaining('403')])
    }
    // Another project's member sees a community image, so it gets 403 too (a private one would be 404).
    const other = await fetch(`${agent.url}/v2/images/${id}`, { ...patch, headers: { ...patch.headers, ...asProject(env.projects.beta, 'member') } })
    expect(other.status).toBe(403)
    const upstream = await (await upstreamFetch(member, `/v2/images/${id}`)).json() as { name: string, status: string, tags: string[] }
    expect(upstream).toMatchObject({ name: 'read-only', status: 'queued', tags: [] })
    expect((await (await show(agent.url, id)).json() as { name: string }).name).toBe('read-only')
    // The mesh's own images are the agent's to write.
    const own = await fetch(`${agent.url}/v2/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'mesh-only', disk_format: 'raw', container_format: 'bare' }) })
    expect(own.status).toBe(201)
    const ownId = (await own.json() as { id: string }).id
    expect((await fetch(`${agent.url}/v2/images/${ownId}`, patch)).status).toBe(200)
    await upstreamFetch(member, `/v2/images/${id}`, { method: 'DELETE' })
  })
})
