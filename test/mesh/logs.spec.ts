import { meshOf, peerIdOf, waitFor } from '@peerglance/testing'
import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { download, glance, logsMatching, meshPerTest, metric, seedImage, sha512 } from './helpers.ts'

// What an operator reads in the info log: the mesh forming and breaking up; not every client probe.

const { set } = meshPerTest()

describe('the info log', () => {
  it('says when peers connect and disconnect, what was uploaded and downloaded, and keeps 404 probes out', async () => {
    const mesh = set(await meshOf(2))
    const [a, b] = mesh.agents
    const idOfA = peerIdOf(a)
    await waitFor(() => logsMatching(b.logs, 'peer connected').some(l => l.peer === idOfA), { what: 'B logs A connecting' })

    const data = randomBytes(2 * 1024 * 1024 + 5)
    const id = await seedImage(glance(a.url), [glance(b.url)], data, 'logged')
    expect(logsMatching(a.logs, 'upload finished')).toMatchObject([{ imageId: id, bytes: data.length, level: 30 }])
    expect((await download(b.url, `/v2/images/${id}/file`)).sha512).toBe(sha512(data))
    await waitFor(() => logsMatching(b.logs, 'download finished').some(l => l.imageId === id && l.bytes === data.length && typeof l.ms === 'number'), { what: 'B logs the download' })
    // 3 chunks (1 MiB each): all fetched for the first read, all local for the second.
    expect(await metric(b.url, 'peerglance_cache_misses_total')).toBe(3)
    expect(await metric(b.url, 'peerglance_cache_hits_total')).toBe(0)
    expect((await download(b.url, `/v2/images/${id}/file`)).sha512).toBe(sha512(data))
    expect(await metric(b.url, 'peerglance_cache_misses_total')).toBe(3)
    expect(await metric(b.url, 'peerglance_cache_hits_total')).toBe(3)

    const missing = await glance(b.url).call('/v2/images/3d4e3c9b-1111-4a4a-9b9b-0c0c0c0c0c0c')
    expect(missing.status).toBe(404)
    const forbidden = await glance(b.url, { 'x-project-id': 'p1', 'x-roles': 'reader' }).call('/v2/images', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"x"}'
    })
    expect(forbidden.status).toBe(403)
    await waitFor(() => logsMatching(b.logs, 'request refused').some(l => l.status === 403), { what: 'the 403 logged' })
    expect(logsMatching(b.logs, 'request refused').filter(l => l.status === 404)).toEqual([])

    await a.kill('SIGKILL')
    await waitFor(() => logsMatching(b.logs, 'peer disconnected').some(l => l.peer === idOfA), { what: 'B logs A gone', timeoutMs: 20_000 })
  })
})
