import { createHash, randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { meshOf, tmpDir } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { issueToken, keystoneEnv } from '../keystone/keystone.ts'
import { accessLogSize, applicationCredential, fileBytesLogged, glanceAccount, glanceEnv, upstreamConfig, upstreamFetch } from './upstream.ts'

let dir: string
let mesh: TestMesh
let credential: Awaited<ReturnType<typeof applicationCredential>> | undefined
const created: string[] = []

beforeAll(async () => {
  dir = await tmpDir('peerglance-upstream-')
  // The upstream found in the catalog by region, the agent logged in with an application
  // credential; a long poll interval: what the agent shows right after a write comes from the
  // write, not from a poll.
  credential = await applicationCredential()
  const env = glanceEnv()
  mesh = await meshOf(1, {
    args: ['--config', await upstreamConfig(dir, {
      url: null,
      region: env.region,
      keystone: { url: env.keystoneUrl, applicationCredentialId: credential.id, applicationCredentialSecret: credential.secret },
      writes: 'write-through',
      pollIntervalMs: 600_000
    })]
  })
})

afterAll(async () => {
  await mesh?.close()
  await credential?.remove()
  if (dir != null) await rm(dir, { recursive: true, force: true })
  for (const id of created) await upstreamFetch(glanceAccount(), `/v2/images/${id}`, { method: 'DELETE' })
})

const PATCH = 'application/openstack-images-v2.1-json-patch'

describe('upstream.writes: write-through, with the upstream found by region and an application credential', () => {
  it('creates, uploads, updates and deletes at the upstream first, then shows the result at once; the upstream\'s refusals are the caller\'s', async () => {
    const agent = mesh.agents[0]
    const env = keystoneEnv()
    const alpha = (await issueToken(env.accounts['alpha-member'])).token

    // Create, with the caller's token: the upstream makes it, owned by the caller's project.
    const res = await fetch(`${agent.url}/v2/images`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-auth-token': alpha }, body: JSON.stringify({ name: 'wt', disk_format: 'raw', container_format: 'bare' }) })
    expect(res.status).toBe(201)
    const { id, owner } = await res.json() as { id: string, owner: string }
    created.push(id)
    expect(owner).toBe(env.projects.alpha)
    expect((await upstreamFetch(env.accounts['alpha-member'], `/v2/images/${id}`)).status).toBe(200)
    expect((await fetch(`${agent.url}/v2/images/${id}`)).status).toBe(200)

    // Upload through the agent: the upstream stores it, and the agent keeps the bytes that passed
    // through, so a download never goes back to the upstream for them.
    const data = randomBytes(3 * 1024 * 1024 + 3)
    const from = accessLogSize()
    const put = await fetch(`${agent.url}/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'x-auth-token': alpha }, body: data })
    expect(put.status).toBe(204)
    const upstream = await (await upstreamFetch(env.accounts['alpha-member'], `/v2/images/${id}`)).json() as { status: string, os_hash_value: string }
    expect(upstream.status).toBe('active')
    expect(upstream.os_hash_value).toBe(createHash('sha512').update(data).digest('hex'))
    const status = await (await fetch(`${agent.url}/peerglance/v1/status`)).json() as { images: Array<{ id: string, localShare: number | null }> }
    expect(status.images.find(i => i.id === id)?.localShare).toBe(1)
    const back = Buffer.from(await (await fetch(`${agent.url}/v2/images/${id}/file`)).arrayBuffer())
    expect(back.equals(data)).toBe(true)
    expect(fileBytesLogged(id, from)).toEqual({ requests: 0, bytes: 0 })

    // Update: upstream first, the agent at once.
    const renamed = await fetch(`${agent.url}/v2/images/${id}`, { method: 'PATCH', headers: { 'content-type': PATCH, 'x-auth-token': alpha }, body: JSON.stringify([{ op: 'replace', path: '/name', value: 'wt-renamed' }]) })
    expect(renamed.status).toBe(200)
    expect((await (await upstreamFetch(env.accounts['alpha-member'], `/v2/images/${id}`)).json() as { name: string }).name).toBe('wt-renamed')
    expect((await (await fetch(`${agent.url}/v2/images/${id}`)).json() as { name: string }).name).toBe('wt-renamed')

    // Another project's token: the upstream refuses (its image is private to alpha), and so does the agent; nothing changes.
    const beta = (await issueToken(env.accounts['beta-member'])).token
    const refused = await fetch(`${agent.url}/v2/images/${id}`, { method: 'PATCH', headers: { 'content-type': PATCH, 'x-auth-token': beta }, body: JSON.stringify([{ op: 'replace', path: '/name', value: 'beta-was-here' }]) })
    expect(refused.status).toBe(404)
    expect((await (await upstreamFetch(env.accounts['alpha-member'], `/v2/images/${id}`)).json() as { name: string }).name).toBe('wt-renamed')

    // Delete: gone upstream and here.
    const deleted = await fetch(`${agent.url}/v2/images/${id}`, { method: 'DELETE', headers: { 'x-auth-token': alpha } })
    expect(deleted.status).toBe(204)
    expect((await upstreamFetch(env.accounts['alpha-member'], `/v2/images/${id}`)).status).toBe(404)
    expect((await fetch(`${agent.url}/v2/images/${id}`)).status).toBe(404)
  })
})
