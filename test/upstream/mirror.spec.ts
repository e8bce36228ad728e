import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { meshOf, tmpDir, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { keystoneEnv } from '../keystone/keystone.ts'
import { asProject } from '../clients/cli.ts'
import { accessLogSize, glanceEnv, upstreamCli, upstreamConfig, upstreamFetch } from './upstream.ts'

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
    const from = accessLogSize()
    await sleep(5000)
    const lists = readFileSync(glanceEnv().accessLog, 'utf8').slice(from).match(/"GET \/v2\/images\?limit=\d+ HTTP\/1\.1" 200/g) ?? []
    // One poller every ~1.05 s: about 5 lists in 5 s; two pollers would make about 10.
    expect(lists.length).toBeGreaterThanOrEqual(3)
    expect(lists.length).toBeLessThanOrEqual(6)
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
      const image = await waitFor(async () => {
        const res = await show(agent.url, created.id)
        return res.status === 200 ? await res.json() as Record<string, unknown> : undefined
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
