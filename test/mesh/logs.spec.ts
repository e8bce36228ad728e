import { meshOf, peerIdOf, waitFor } from '@peerglance/testing'
import { describe, expect, it } from 'vitest'
import { glance, logsMatching, meshPerTest } from './helpers.ts'

// What an operator reads in the info log: the mesh forming and breaking up; not every client probe.

const { set } = meshPerTest()

describe('the info log', () => {
  it('says when peers connect and disconnect, and keeps 404 probes out', async () => {
    const mesh = set(await meshOf(2))
    const [a, b] = mesh.agents
    const idOfA = peerIdOf(a)
    await waitFor(() => logsMatching(b.logs, 'peer connected').some(l => l.peer === idOfA), { what: 'B logs A connecting' })

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
