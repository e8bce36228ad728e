import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { agentStatus, meshOf, peerIdOf } from '@peerglance/testing'
import { describe, expect, it } from 'vitest'
import { configFile, glance, localShare, meshPerTest, seedImage } from './helpers.ts'

const BIN = fileURLToPath(new URL('../../packages/agent/bin/peerglance.js', import.meta.url))
const { set, dirs } = meshPerTest()

async function peerglance (url: string, ...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile(process.execPath, [BIN, ...args, '--url', url], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (err as { code: number }).code, stdout, stderr })
    })
  })
}

describe('peerglance prefetch, pin, unpin and evict', () => {
  it('fetch an image here, keep it pinned, and evict it once unpinned and held elsewhere', async () => {
    const config = ['--config', await configFile('cache:\n  minReplicas: 1\n', dirs)]
    const mesh = set(await meshOf(2, { argsOf: i => i === 1 ? config : [] }))
    const [a, b] = mesh.agents.map(x => glance(x.url))
    const id = await seedImage(a, [b], randomBytes(3 * 1024 * 1024), 'cmd')

    const fetched = await peerglance(b.url, 'prefetch', id, '--json')
    expect(fetched.stderr).toBe('')
    expect(fetched.code).toBe(0)
    expect(JSON.parse(fetched.stdout)).toMatchObject({ id, localShare: 1 })
    expect(await localShare(b.url, id)).toBe(1)
    // status: the image here and on the one peer (the seed), and the cache's use.
    const status = await peerglance(b.url, 'status')
    expect(status.stdout).toMatch(new RegExp(`${id}\\s+active\\s+3\\.00 MiB\\s+100 %\\s+100 %\\s+cmd\\n`))
    expect(status.stdout).toMatch(/^cache {3}3\.00 MiB of /m)
    const doc = JSON.parse((await peerglance(b.url, 'status', '--json')).stdout) as { coverage: Array<{ self?: boolean, images: Record<string, number> }> }
    expect(doc.coverage.map(a => a.images[id])).toEqual([1, 1])

    expect((await peerglance(b.url, 'pin', id)).stdout).toBe(`image ${id} pinned\n`)
    expect((await agentStatus(b.url)).images.find(i => i.id === id)).toMatchObject({ pinned: true })
    const kept = await peerglance(b.url, 'evict', id)
    expect(kept.code).toBe(0)
    expect(kept.stdout).toBe(`image ${id}: dropped from the cache list, bytes kept (it is pinned here)\n`)
    expect(await localShare(b.url, id)).toBe(1)

    expect((await peerglance(b.url, 'unpin', id)).code).toBe(0)
    const evicted = await peerglance(b.url, 'evict', id, '--json')
    expect(JSON.parse(evicted.stdout)).toEqual({ id, evicted: true, localShare: 0 })
    // A, the seed, holds the only copy now and has the default minReplicas (2): it keeps it.
    const seedKeeps = await peerglance(a.url, 'evict', id)
    expect(seedKeeps.stdout).toContain('bytes kept (fewer than cache.minReplicas peers hold it whole)')
    expect(await localShare(a.url, id)).toBe(1)
  })

  it('prefetch --agents: the agents named, or all, fetch the image and the command follows each one', async () => {
    const mesh = set(await meshOf(3))
    const [a, b, c] = mesh.agents.map(x => glance(x.url))
    const [peerA, peerB, peerC] = mesh.agents.map(peerIdOf)
    const first = await seedImage(a, [b, c], randomBytes(2 * 1024 * 1024 + 5), 'ordered')
    const second = await seedImage(a, [b, c], randomBytes(3 * 1024 * 1024 + 7), 'to-all')

    // Ordered from A, for C only: C fetches it, B does not.
    const named = await peerglance(mesh.agents[0].url, 'prefetch', first, '--agents', peerC, '--json')
    expect(named.stderr).toBe('')
    expect(named.code).toBe(0)
    expect(JSON.parse(named.stdout)).toMatchObject({ id: first, agents: { [peerC]: 1 } })
    expect(await localShare(mesh.agents[2].url, first)).toBe(1)
    expect(await localShare(mesh.agents[1].url, first)).toBe(0)

    // Ordered from B, for all: every agent holds it whole when the command returns.
    const all = await peerglance(mesh.agents[1].url, 'prefetch', second, '--agents', 'all', '--json')
    expect(all.code).toBe(0)
    expect(JSON.parse(all.stdout).agents).toEqual({ [peerA]: 1, [peerB]: 1, [peerC]: 1 })
    for (const agent of mesh.agents) expect(await localShare(agent.url, second)).toBe(1)
    expect((await agentStatus(mesh.agents[1].url)).images.find(i => i.id === first)?.localShare).toBe(0)

    // An agent that is not in the mesh never answers: the command says which one, after --timeout.
    const stranger = '12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq'
    const stuck = await peerglance(mesh.agents[0].url, 'prefetch', first, '--agents', `${peerC},${stranger}`, '--timeout', '2')
    expect(stuck.code).toBe(1)
    expect(stuck.stderr).toMatch(new RegExp(`not whole after 2 s on ${stranger} unreachable`))
  })

  it('exit 1 with the agent\'s message for an unknown image, 2 for bad usage', async () => {
    const mesh = set(await meshOf(1))
    const url = mesh.agents[0].url
    const unknown = await peerglance(url, 'pin', '0b7f7c3e-4d2a-4f6e-9d61-1a2b3c4d5e6f')
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/^peerglance: PUT \/peerglance\/v1\/pins\/0b7f7c3e-4d2a-4f6e-9d61-1a2b3c4d5e6f: 404 /)
    expect((await peerglance(url, 'prefetch')).code).toBe(2)
    expect((await peerglance(url, 'evict', 'a', 'b')).code).toBe(2)
    expect((await peerglance(url, 'prefetch', 'x', '--timeout', 'soon')).code).toBe(2)
    expect((await peerglance(url, 'prefetch', 'x', '--agents', 'all,abc')).code).toBe(2)
    expect((await peerglance(url, 'pin', 'x', '--agents', 'all')).code).toBe(2)
    const ordered = await peerglance(url, 'prefetch', '0b7f7c3e-4d2a-4f6e-9d61-1a2b3c4d5e6f', '--agents', 'all')
    expect(ordered.code).toBe(1)
    expect(ordered.stderr).toMatch(/^peerglance: POST \/peerglance\/v1\/prefetch: 404 /)
  })
})
