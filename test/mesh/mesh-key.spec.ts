import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { meshOf, peerIdOf, waitConnected, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { configFile, glance, logsMatching, meshPerTest } from './helpers.ts'

const { set: track, dirs } = meshPerTest()
let mesh: TestMesh

describe('an agent with another mesh key', () => {
  it('connects, yet neither gets the mesh\'s images nor gives it its own', async () => {
    const right = await configFile('mesh:\n  key: the-mesh-key\n', dirs)
    const wrong = await configFile('mesh:\n  key: some-other-key\n', dirs)
    mesh = track(await meshOf(2, { argsOf: () => ['--config', right] }))
    const [first, member] = mesh.agents
    const a = glance(first.url)
    const f = glance(member.url)
    const before = await a.create({ name: 'made-before-e-joined' })
    await waitFor(async () => await f.find(before.id) != null, { what: 'the keyed peer seeing A\'s image' })

    const outsider = await mesh.add({ args: ['--config', wrong] })
    const e = glance(outsider.url)
    await waitConnected([first, outsider])
    const after = await a.create({ name: 'made-after-e-joined' })
    const fromE = await e.create({ name: 'made-on-e' })
    const fromF = await f.create({ name: 'made-on-f' })

    // The agents with the right key exchange all of it within this wait, so it is long enough for E too.
    await waitFor(async () => await f.find(after.id) != null && await a.find(fromF.id) != null, { what: 'the keyed agents converging' })
    await sleep(1000)
    expect((await e.list()).map(i => i.id)).toEqual([fromE.id])
    expect(await a.find(fromE.id)).toBeUndefined()
    expect(await f.find(fromE.id)).toBeUndefined()

    // A refused E's anti-entropy request for want of the key, and said so.
    const refused = logsMatching(first.logs, 'metadata sync failed').filter(l => l.peer === peerIdOf(outsider))
    expect(refused.length).toBeGreaterThan(0)
    expect((refused[0].err as { message: string }).message).toContain('unauthenticated')
    expect(logsMatching(first.logs, 'metadata sync failed').filter(l => l.peer === peerIdOf(member))).toEqual([])
  })
})
