import { createHash, randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { meshOf, tmpDir, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { keystoneEnv } from '../keystone/keystone.ts'
import { accessLogSize, fileBytesLogged, upstreamConfig, upstreamFetch, upstreamProxy } from './upstream.ts'

const SIZE = 24 * 1024 * 1024 + 12345
/** The pieces a first fetch is split into (whole 1 MiB chunks; at least 4 MiB). */
const PIECE = 4 * 1024 * 1024

let dir: string
let mesh: TestMesh
let proxy: Awaited<ReturnType<typeof upstreamProxy>>
const created: string[] = []

beforeAll(async () => {
  dir = await tmpDir('peerglance-upstream-')
  // One complete copy elsewhere lets an agent evict: the upstream's counts, so both agents may.
  // The agents reach the upstream through a proxy this file can cut; the shared Glance stays up.
  proxy = await upstreamProxy()
  mesh = await meshOf(2, { args: ['--config', await upstreamConfig(dir, { url: proxy.url }, { cache: { minReplicas: 1 } })] })
})

afterAll(async () => {
  await mesh?.close()
  if (dir != null) await rm(dir, { recursive: true, force: true })
  await proxy?.cut()
  for (const id of created) await upstreamFetch(keystoneEnv().accounts['alpha-member'], `/v2/images/${id}`, { method: 'DELETE' })
})

/** An active image made upstream as alpha-member, with these bytes. */
async function upstreamImage (name: string, data: Uint8Array): Promise<string> {
  const member = keystoneEnv().accounts['alpha-member']
  const res = await upstreamFetch(member, '/v2/images', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, disk_format: 'raw', container_format: 'bare' }) })
  expect(res.status).toBe(201)
  const { id } = await res.json() as { id: string }
  created.push(id)
  const put = await upstreamFetch(member, `/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data })
  expect(put.status).toBe(204)
  return id
}

/** Every agent lists the image, active; if not, the failure says what each agent logged of the upstream. */
async function listed (id: string): Promise<void> {
  for (const agent of mesh.agents) {
    await waitFor(async () => {
      const res = await fetch(`${agent.url}/v2/images/${id}`)
      return res.status === 200 && (await res.json() as { status: string }).status === 'active'
    }, { timeoutMs: 20_000 }).catch((err: Error) => {
      const said = mesh.agents.map((a, i) => `agent ${i}: ${a.logs.filter(l => /upstream|mirror/.test(String(l.msg))).slice(-5).map(l => JSON.stringify(l)).join('\n') || 'nothing'}`)
      throw new Error(`${err.message}: image ${id} not active at ${agent.url}\n${said.join('\n')}`)
    })
  }
}

async function download (url: string, id: string): Promise<{ status: number, sha512: string, bytes: number, body: string }> {
  const res = await fetch(`${url}/v2/images/${id}/file`)
  const data = Buffer.from(await res.arrayBuffer())
  return { status: res.status, sha512: createHash('sha512').update(data).digest('hex'), bytes: data.byteLength, body: res.status === 200 ? '' : data.toString() }
}

async function upstreamStatus (url: string): Promise<{ upstream: string, writes: string, lastRefresh: string | null }> {
  return (await (await fetch(`${url}/peerglance/v1/status`)).json() as { upstream: { upstream: string, writes: string, lastRefresh: string | null } }).upstream
}

async function metric (url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split('\n').find(l => l.startsWith(`${name} `))
  return line == null ? NaN : Number(line.split(' ')[1])
}

describe('an existing Glance as the origin: bytes', () => {
  let cached: { id: string, sha512: string }

  it('downloads an upstream image byte-exact through two agents at once; the upstream sends each piece once, to one of them', async () => {
    const data = randomBytes(SIZE)
    const sha512 = createHash('sha512').update(data).digest('hex')
    const id = await upstreamImage('read-through', data)
    await listed(id)
    const from = accessLogSize()
    const results = await Promise.all(mesh.agents.map(async agent => await download(agent.url, id)))
    for (const r of results) expect(r).toEqual({ status: 200, sha512, bytes: SIZE, body: '' })
    const logged = fileBytesLogged(id, from)
    console.log(`upstream sent ${logged.bytes} bytes in ${logged.requests} request(s) for a ${SIZE}-byte image read by 2 agents at once`)
    expect(logged.bytes).toBeGreaterThanOrEqual(SIZE)
    expect(logged.bytes).toBeLessThanOrEqual(SIZE * 1.1)
    // One Range request per 4 MiB piece, each piece once; what an agent did not fetch it read from the other.
    expect(logged.requests).toBe(Math.ceil(SIZE / PIECE))
    const received = await Promise.all(mesh.agents.map(async agent => await metric(agent.url, 'peerglance_upstream_bytes_received_total')))
    const fromPeers = await Promise.all(mesh.agents.map(async agent => await metric(agent.url, 'peerglance_upstream_piece_bytes_from_peers_total')))
    console.log(`bytes from the upstream per agent: ${received.join(', ')}; from the other agent: ${fromPeers.join(', ')}`)
    expect(received.reduce((a, b) => a + b, 0)).toBe(SIZE)
    for (const [i] of mesh.agents.entries()) expect(received[i] + fromPeers[i]).toBe(SIZE)
    // Both keep it: a second read is served by the mesh alone.
    const again = accessLogSize()
    for (const agent of mesh.agents) expect(await download(agent.url, id)).toEqual({ status: 200, sha512, bytes: SIZE, body: '' })
    expect(fileBytesLogged(id, again).requests).toBe(0)
    cached = { id, sha512 }
  })

  it('reads an upstream image through again once every agent evicted it, instead of failing', async () => {
    for (const agent of mesh.agents) expect((await fetch(`${agent.url}/v2/cache/${cached.id}`, { method: 'DELETE' })).status).toBe(204)
    for (const agent of mesh.agents) {
      await waitFor(async () => {
        const status = await (await fetch(`${agent.url}/peerglance/v1/status`)).json() as { images: Array<{ id: string, localShare: number | null }> }
        return status.images.find(i => i.id === cached.id)?.localShare === 0
      }, { timeoutMs: 20_000, what: 'the image evicted' })
    }
    const from = accessLogSize()
    expect(await download(mesh.agents[0].url, cached.id)).toEqual({ status: 200, sha512: cached.sha512, bytes: SIZE, body: '' })
    const logged = fileBytesLogged(cached.id, from)
    expect(logged.bytes).toBeGreaterThanOrEqual(SIZE)
    expect(logged.bytes).toBeLessThanOrEqual(SIZE * 1.1)
    // Held in the mesh again: the other agent reads it from its peer.
    const again = accessLogSize()
    expect(await download(mesh.agents[1].url, cached.id)).toEqual({ status: 200, sha512: cached.sha512, bytes: SIZE, body: '' })
    expect(fileBytesLogged(cached.id, again).requests).toBe(0)
  })

  it('prefetches an upstream image on every agent with one order: the upstream sends it once, shared', async () => {
    const size = 2 * PIECE + 4321
    const data = randomBytes(size)
    const sha512 = createHash('sha512').update(data).digest('hex')
    const id = await upstreamImage('prefetched', data)
    await listed(id)
    const from = accessLogSize()
    const ordered = await fetch(`${mesh.agents[0].url}/peerglance/v1/prefetch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image_id: id, agents: 'all' }) })
    expect(ordered.status).toBe(202)
    for (const agent of mesh.agents) {
      await waitFor(async () => {
        const status = await (await fetch(`${agent.url}/peerglance/v1/status`)).json() as { images: Array<{ id: string, localShare: number | null }> }
        return status.images.find(i => i.id === id)?.localShare === 1
      }, { timeoutMs: 60_000, what: 'the image prefetched' })
    }
    const logged = fileBytesLogged(id, from)
    expect(logged.bytes).toBeGreaterThanOrEqual(size)
    expect(logged.bytes).toBeLessThanOrEqual(size * 1.1)
    const again = accessLogSize()
    for (const agent of mesh.agents) expect(await download(agent.url, id)).toEqual({ status: 200, sha512, bytes: size, body: '' })
    expect(fileBytesLogged(id, again).requests).toBe(0)
  })

  it('with the upstream stopped, serves what the mesh holds and answers 503 with a message for what it does not', async () => {
    const missing = await upstreamImage('not-yet-read', randomBytes(1024 * 1024))
    await listed(missing)
    const refreshed = await metric(mesh.agents[0].url, 'peerglance_upstream_last_refresh_seconds')
    expect(refreshed).toBeGreaterThan(Date.now() / 1000 - 60)
    // The status document says it too, on every agent (only one of them polls).
    for (const agent of mesh.agents) {
      const view = await upstreamStatus(agent.url)
      expect(view).toMatchObject({ upstream: proxy.url, writes: 'read-only' })
      expect(Date.parse(view.lastRefresh as string)).toBeGreaterThan(Date.now() - 60_000)
    }
    await proxy.cut()
    for (const agent of mesh.agents) {
      expect(await download(agent.url, cached.id)).toEqual({ status: 200, sha512: cached.sha512, bytes: SIZE, body: '' })
      const res = await download(agent.url, missing)
      expect(res.status).toBe(503)
      expect(res.body).toMatch(/upstream/i)
      // Metadata stays: both images are still listed.
      expect((await fetch(`${agent.url}/v2/images/${missing}`)).status).toBe(200)
    }
    // The last refresh stays where it was while the upstream is down.
    await new Promise(resolve => setTimeout(resolve, 2500))
    const stale = await metric(mesh.agents[0].url, 'peerglance_upstream_last_refresh_seconds')
    expect(stale).toBeLessThan(Date.now() / 1000 - 2)
    for (const agent of mesh.agents) expect(Date.parse((await upstreamStatus(agent.url)).lastRefresh as string)).toBeLessThan(Date.now() - 2000)
  })
})
