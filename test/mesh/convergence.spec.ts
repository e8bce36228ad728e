import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { agentStatus, meshOf, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { asProject, configFile, glance, logsMatching, md5, meshPerTest, sha512 } from './helpers.ts'
import type { Glance, Image } from './helpers.ts'

/** How long any one change may take to reach every agent before the test fails. */
const CONVERGE_MS = 10_000

/** Resolves with the document once every agent shows the same one for the image (and it matches `expected`). */
async function sameEverywhere (apis: Glance[], id: string, expected: Record<string, unknown> = {}): Promise<Image> {
  return await waitFor(async () => {
    const docs = await Promise.all(apis.map(async api => await api.find(id)))
    for (const doc of docs) expect(doc).toEqual(docs[0])
    expect(docs[0]).toMatchObject(expected)
    return docs[0]
  }, { timeoutMs: CONVERGE_MS, intervalMs: 20, what: `image ${id} identical on ${apis.length} agents` })
}

async function goneEverywhere (apis: Glance[], id: string): Promise<void> {
  await waitFor(async () => {
    const docs = await Promise.all(apis.map(async api => await api.find(id)))
    return docs.every(doc => doc == null)
  }, { timeoutMs: CONVERGE_MS, intervalMs: 20, what: `image ${id} gone from ${apis.length} agents` })
}

describe('every kind of change reaches every agent of a 3-agent mesh', () => {
  let mesh: TestMesh
  let a: Glance, b: Glance, c: Glance, all: Glance[]

  beforeAll(async () => {
    mesh = await meshOf(3)
    ;[a, b, c] = mesh.agents.map(agent => glance(agent.url))
    all = [a, b, c]
  })

  afterAll(async () => { await mesh?.close() })

  it('an image created on one agent is listed by the others', async () => {
    const t0 = performance.now()
    const created = await a.create({ name: 'created-on-a', min_disk: 3 })
    const after: Record<string, number> = {}
    await Promise.all([['B', b], ['C', c]].map(async ([name, api]) => {
      await waitFor(async () => (await (api as Glance).list(`id=${created.id}`)).length === 1, { timeoutMs: CONVERGE_MS, intervalMs: 5 })
      after[name as string] = performance.now() - t0
    }))
    console.log(`image created on A listed on B after ${after.B.toFixed(0)} ms, on C after ${after.C.toFixed(0)} ms (5 ms polling)`)
    expect(await sameEverywhere(all, created.id)).toEqual(created)
  })

  it('name, extra properties and their removal changed on one agent show on the others', async () => {
    const { id } = await a.create({ name: 'before', os_distro: 'debian', build: '1' })
    await sameEverywhere(all, id)
    const patched = await b.patch(id, [
      { op: 'replace', path: '/name', value: 'after' },
      { op: 'add', path: '/hw_disk_bus', value: 'virtio' },
      { op: 'replace', path: '/build', value: '2' },
      { op: 'remove', path: '/os_distro' }
    ])
    const seen = await sameEverywhere(all, id, { name: 'after', hw_disk_bus: 'virtio', build: '2' })
    expect(seen).toEqual(patched)
    expect(seen).not.toHaveProperty('os_distro')
  })

  it('tags added and removed on one agent show on the others', async () => {
    const { id } = await c.create({ name: 'tagged', tags: ['one'] })
    await sameEverywhere(all, id, { tags: ['one'] })
    expect(await b.request('PUT', `/v2/images/${id}/tags/two`)).toMatchObject({ status: 204 })
    expect(await b.request('PUT', `/v2/images/${id}/tags/three`)).toMatchObject({ status: 204 })
    const added = await sameEverywhere(all, id)
    expect([...added.tags].sort()).toEqual(['one', 'three', 'two'])
    expect(await a.request('DELETE', `/v2/images/${id}/tags/one`)).toMatchObject({ status: 204 })
    const removed = await sameEverywhere(all, id)
    expect([...removed.tags].sort()).toEqual(['three', 'two'])
  })

  it('a member added by the owner on one agent accepts on another, and the owner sees it on a third', async () => {
    const alice = all.map(api => glance(api.url, asProject('alice')))
    const bob = all.map(api => glance(api.url, asProject('bob')))
    const image = await alice[0].create({ name: 'shared-by-alice', visibility: 'shared' })
    expect(image.owner).toBe('alice')
    expect(await alice[0].request('POST', `/v2/images/${image.id}/members`, { member: 'bob' })).toMatchObject({ status: 200, body: { member_id: 'bob', status: 'pending' } })

    // The member learns of the share on another agent, and can see the image there.
    const pending = await waitFor(async () => {
      const res = await bob[1].request('GET', `/v2/images/${image.id}/members/bob`)
      return res.status === 200 ? res.body : undefined
    }, { timeoutMs: CONVERGE_MS, what: 'membership on B' })
    expect(pending).toMatchObject({ image_id: image.id, member_id: 'bob', status: 'pending' })
    expect(await bob[1].list()).not.toContainEqual(expect.objectContaining({ id: image.id }))
    expect(await bob[1].request('PUT', `/v2/images/${image.id}/members/bob`, { status: 'accepted' })).toMatchObject({ status: 200, body: { status: 'accepted' } })

    await waitFor(async () => {
      const res = await alice[2].request('GET', `/v2/images/${image.id}/members`)
      expect(res.body.members).toEqual([expect.objectContaining({ member_id: 'bob', status: 'accepted' })])
      expect((await bob[2].list()).map(i => i.id)).toContain(image.id)
      expect((await bob[0].list()).map(i => i.id)).toContain(image.id)
      return true
    }, { timeoutMs: CONVERGE_MS, what: 'accepted membership on A and C' })

    // Removing the member on one agent takes the image away from them on the others.
    expect(await alice[2].request('DELETE', `/v2/images/${image.id}/members/bob`)).toMatchObject({ status: 204 })
    await waitFor(async () => {
      expect(await bob[0].find(image.id)).toBeUndefined()
      expect(await bob[1].find(image.id)).toBeUndefined()
      expect((await alice[1].request('GET', `/v2/images/${image.id}/members`)).body.members).toEqual([])
      return true
    }, { timeoutMs: CONVERGE_MS, what: 'member removed on A and B' })
  })

  it('an upload finished on one agent makes the image active with the same size and hashes on the others', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17)
    const { id } = await a.create({ name: 'uploaded' })
    await a.upload(id, data)
    const seen = await sameEverywhere(all, id, {
      status: 'active', size: data.length, checksum: md5(data), os_hash_algo: 'sha512', os_hash_value: sha512(data)
    })
    expect(seen).toEqual(await a.image(id))
    // B knows of the data without holding any of it.
    const onB = (await agentStatus(b.url)).images.find(i => i.id === id)
    expect(onB).toMatchObject({ status: 'active', size: data.length })
    expect(onB?.localShare).toBe(0)
  })

  it('deactivate and reactivate on one agent show on the others', async () => {
    const { id } = await a.create({ name: 'to-deactivate' })
    await a.upload(id, randomBytes(4096))
    await sameEverywhere(all, id, { status: 'active' })
    expect(await b.request('POST', `/v2/images/${id}/actions/deactivate`)).toMatchObject({ status: 204 })
    await sameEverywhere(all, id, { status: 'deactivated' })
    expect(await c.request('POST', `/v2/images/${id}/actions/reactivate`)).toMatchObject({ status: 204 })
    await sameEverywhere(all, id, { status: 'active' })
  })

  it('a protected image cannot be deleted on another agent until unprotected, then is gone everywhere', async () => {
    const { id } = await a.create({ name: 'protected' })
    await a.patch(id, [{ op: 'replace', path: '/protected', value: true }])
    await sameEverywhere(all, id, { protected: true })
    expect(await c.request('DELETE', `/v2/images/${id}`)).toMatchObject({ status: 403 })
    await b.patch(id, [{ op: 'replace', path: '/protected', value: false }])
    await sameEverywhere(all, id, { protected: false })
    expect(await c.request('DELETE', `/v2/images/${id}`)).toMatchObject({ status: 204 })
    await goneEverywhere(all, id)
    for (const api of [a, b]) expect(await api.request('GET', `/v2/images/${id}`)).toMatchObject({ status: 404 })
  })
})

describe('tags added on two agents at once', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.close() })

  it('both stay on the image, as each add was answered 204', async () => {
    mesh = await meshOf(2)
    const [a, b] = mesh.agents.map(agent => glance(agent.url))
    const { id } = await a.create({ name: 'tagged-twice' })
    await waitFor(async () => await b.find(id) != null)
    const answers = await Promise.all([a.request('PUT', `/v2/images/${id}/tags/from-a`), b.request('PUT', `/v2/images/${id}/tags/from-b`)])
    expect(answers.map(r => r.status)).toEqual([204, 204])
    const doc = await waitFor(async () => {
      const [x, y] = await Promise.all([a.image(id), b.image(id)])
      expect(x).toEqual(y)
      expect([...x.tags].sort()).toEqual(['from-a', 'from-b'])
      return x
    })
    expect(doc.tags).toHaveLength(2)
  })
})

describe('writes made while two agents connect', () => {
  const { set: track, dirs } = meshPerTest()

  it('reach the new peer within 2 s, not at the next periodic sync', async () => {
    // A long periodic sync, so only the sync on connect and gossip can deliver in time.
    const config = await configFile('mesh:\n  syncIntervalMs: 600000\n', dirs)
    const mesh = track(await meshOf(1, { args: ['--config', config] }))
    const a = glance(mesh.agents[0].url)
    // Write on A every few ms from before B is spawned until well after it has connected, so some
    // writes fall in every window of the connection's set-up (identify, gossipsub streams and
    // subscriptions, B's metadata service starting after its mesh).
    const ids: string[] = []
    let writing = true
    const writer = (async () => {
      // At most one page of the listing.
      while (writing && ids.length < 1000) ids.push((await a.create({ name: `during-connect-${ids.length}` })).id)
    })()
    const joining = mesh.add()
    const b = glance((await joining).url)
    await waitFor(async () => (await agentStatus(b.url)).peers.length === 1, { what: 'B connected to A' })
    await new Promise(resolve => setTimeout(resolve, 500))
    writing = false
    await writer
    const last = performance.now()
    await waitFor(async () => {
      const listed = new Set((await b.list()).map(image => image.id))
      return ids.every(id => listed.has(id))
    }, { timeoutMs: 2000, intervalMs: 20, what: `all ${ids.length} images written during the connection on B` })
    console.log(`${ids.length} images written while B connected; B listed all ${(performance.now() - last).toFixed(0)} ms after the last`)
  })
})

describe('an agent that joins late', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.close() })

  it('catches up on every image and change made before it started, with no new change', async () => {
    mesh = await meshOf(1)
    const a = glance(mesh.agents[0].url)
    const ids: string[] = []
    for (let i = 0; i < 50; i++) ids.push((await a.create({ name: `image-${i}`, tags: [`n${i % 5}`], min_ram: i })).id)
    for (const id of ids.slice(0, 10)) await a.patch(id, [{ op: 'replace', path: '/name', value: `renamed-${id.slice(0, 8)}` }, { op: 'add', path: '/os_type', value: 'linux' }])
    for (const id of ids.slice(10, 15)) expect(await a.request('PUT', `/v2/images/${id}/tags/extra`)).toMatchObject({ status: 204 })
    for (const id of ids.slice(15, 18)) await a.upload(id, randomBytes(100_000))
    for (const id of ids.slice(18, 20)) {
      await a.patch(id, [{ op: 'replace', path: '/visibility', value: 'shared' }])
      expect(await a.request('POST', `/v2/images/${id}/members`, { member: 'carol' })).toMatchObject({ status: 200 })
    }
    for (const id of ids.slice(45)) expect(await a.request('DELETE', `/v2/images/${id}`)).toMatchObject({ status: 204 })
    const expected = (await a.list()).sort((x, y) => x.id.localeCompare(y.id))
    expect(expected).toHaveLength(45)

    const t0 = performance.now()
    const late = await mesh.add()
    const d = glance(late.url)
    await waitFor(async () => (await d.list()).length === 45, { timeoutMs: CONVERGE_MS, intervalMs: 20, what: '45 images on the late joiner' })
    console.log(`late joiner listed all 45 images ${(performance.now() - t0).toFixed(0)} ms after it was spawned`)
    expect((await d.list()).sort((x, y) => x.id.localeCompare(y.id))).toEqual(expected)
    for (const id of ids.slice(18, 20)) {
      expect((await d.request('GET', `/v2/images/${id}/members`)).body).toEqual((await a.request('GET', `/v2/images/${id}/members`)).body)
    }
    for (const id of ids.slice(45)) expect(await d.find(id)).toBeUndefined()
    expect(logsMatching(late.logs, 'caught up from peer').length).toBeGreaterThan(0)
  })
})

describe('two agents changing the same image at once', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.close() })

  it('end with identical documents when they write concurrently while connected', async () => {
    mesh = await meshOf(2)
    const [a, b] = mesh.agents.map(agent => glance(agent.url))
    const { id } = await a.create({ name: 'contended' })
    await sameEverywhere([a, b], id)
    for (let round = 0; round < 5; round++) {
      await Promise.all([
        a.patch(id, [{ op: 'replace', path: '/name', value: `a-${round}` }, { op: 'add', path: '/owner_note', value: `a-${round}` }]),
        b.patch(id, [{ op: 'replace', path: '/name', value: `b-${round}` }, { op: 'add', path: '/owner_note', value: `b-${round}` }]),
        a.request('PUT', `/v2/images/${id}/tags/a${round}`),
        b.request('PUT', `/v2/images/${id}/tags/b${round}`)
      ])
      const doc = await sameEverywhere([a, b], id)
      expect([`a-${round}`, `b-${round}`]).toContain(doc.name)
      expect([`a-${round}`, `b-${round}`]).toContain(doc.owner_note)
    }
  })

  it('end with identical documents after writing while cut off from each other', async () => {
    mesh = await meshOf(2)
    const [first, second] = mesh.agents
    const a = glance(first.url)
    const { id } = await a.create({ name: 'partitioned', both: 'original' })
    await sameEverywhere([a, glance(second.url)], id)

    // Cut B off: restart it on the same data dir with no bootstrap peer, so neither side can dial the other.
    expect(await second.kill('SIGTERM')).toBe(0)
    const alone = await mesh.add({ dataDir: second.dataDir, bootstrap: false })
    const b = glance(alone.url)
    expect((await agentStatus(alone.url)).peers).toEqual([])

    await a.patch(id, [{ op: 'replace', path: '/name', value: 'written-on-a' }, { op: 'replace', path: '/both', value: 'a' }, { op: 'add', path: '/only_a', value: 'a' }])
    expect(await a.request('PUT', `/v2/images/${id}/tags/from-a`)).toMatchObject({ status: 204 })
    await b.patch(id, [{ op: 'replace', path: '/name', value: 'written-on-b' }, { op: 'replace', path: '/both', value: 'b' }, { op: 'add', path: '/only_b', value: 'b' }])
    expect(await b.request('PUT', `/v2/images/${id}/tags/from-b`)).toMatchObject({ status: 204 })
    expect((await a.image(id)).name).toBe('written-on-a')
    expect((await b.image(id)).name).toBe('written-on-b')

    // Heal: B comes back with A as its bootstrap peer.
    expect(await alone.kill('SIGTERM')).toBe(0)
    const healed = await mesh.add({ dataDir: second.dataDir })
    const doc = await sameEverywhere([a, glance(healed.url)], id)
    // Last writer wins per field; properties written on one side only survive from both.
    expect(doc).toMatchObject({ name: 'written-on-b', both: 'b', only_a: 'a', only_b: 'b' })
    console.log(`after the partition healed both agents show tags ${JSON.stringify(doc.tags)}`)
  })
})
