// Liveness (packages/mesh/src/liveness.ts): every connection is pinged every 5 s with a yamux ping
// frame and closed when a ping is not answered within 5 s. A frozen agent (SIGSTOP: its kernel
// still acknowledges TCP, nothing answers above it) is what a hung host or a silent partition
// looks like: its peers must let it go within ~10 s, keep each other, and take it back promptly
// once it answers again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { agentStatus, meshOf, peerIdOf, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'

/** Ping interval + timeout (constants.ts), and slack for a loaded machine. */
const DROP_WITHIN_MS = 10_000 + 5_000

describe('a frozen agent', () => {
  let mesh: TestMesh

  beforeAll(async () => { mesh = await meshOf(3) })
  afterAll(async () => {
    mesh?.agents[1]?.process.kill('SIGCONT')
    await mesh?.close()
  })

  it('is dropped by its peers within ping interval + timeout, which keep each other, and is taken back once it answers', async () => {
    const [a, b, c] = mesh.agents
    const [idA, idB, idC] = [a, b, c].map(peerIdOf)
    // Pinged and answered for over two rounds: live connections are not closed.
    const t0 = Date.now()
    while (Date.now() - t0 < 11_000) {
      const [sa, sc] = await Promise.all([agentStatus(a.url), agentStatus(c.url)])
      expect(sa.peers).toEqual(expect.arrayContaining([idB, idC]))
      expect(sc.peers).toEqual(expect.arrayContaining([idA, idB]))
      await new Promise(resolve => setTimeout(resolve, 500))
    }

    b.process.kill('SIGSTOP')
    const frozen = Date.now()
    await waitFor(async () => {
      const [sa, sc] = await Promise.all([agentStatus(a.url), agentStatus(c.url)])
      return !sa.peers.includes(idB) && !sc.peers.includes(idB)
    }, { timeoutMs: DROP_WITHIN_MS, intervalMs: 200, what: 'A and C to drop the frozen B' })
    const droppedMs = Date.now() - frozen
    console.log(`frozen agent dropped by both peers after ${droppedMs} ms`)
    const [sa, sc] = await Promise.all([agentStatus(a.url), agentStatus(c.url)])
    expect(sa.peers).toContain(idC)
    expect(sc.peers).toContain(idA)

    b.process.kill('SIGCONT')
    // Its connections were aborted by the others; the peer sets (short of their target) redial.
    await waitFor(async () => {
      const statuses = await Promise.all([a, b, c].map(async agent => await agentStatus(agent.url)))
      return statuses[0].peers.includes(idB) && statuses[2].peers.includes(idB) && statuses[1].peers.length === 2
    }, { timeoutMs: 10_000, intervalMs: 200, what: 'B back in the mesh' })
  }, 60_000)
})
