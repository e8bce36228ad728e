import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import type { ImageRecord, Replica } from '@peerglance/interface'
import { MetadataSync, PeerRecordSigner, createMeshNode, loadOrCreatePeerKey } from '@peerglance/mesh'
import { LevelMetadataStore } from '@peerglance/metadata-store'
import { meshOf, multiaddrOf, peerIdOf, tmpDir, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { configFile, download, glance, logsMatching, meshPerTest, metric, sha512 } from './helpers.ts'
import { silentLogger } from '@peerglance/interface'

const { set: track, dirs } = meshPerTest()
let mesh: TestMesh
const KEY = 'trust-spec-mesh-key-0123456789abcdef'

describe('a compromised member', () => {
  it('cannot change an active image\'s data: its validly signed record is refused on every agent, which keep serving the original bytes', async () => {
    const config = await configFile(`mesh:\n  key: ${KEY}\n`, dirs)
    mesh = track(await meshOf(3, { argsOf: () => ['--config', config] }))
    const [a, b, c] = mesh.agents
    const original = randomBytes(3 * 1024 * 1024)
    const { id } = await glance(a.url).create({ name: 'golden', visibility: 'private' })
    await glance(a.url).upload(id, original)
    for (const agent of [b, c]) await waitFor(async () => (await glance(agent.url).find(id))?.status === 'active', { what: 'the image active everywhere' })
    const honest = await glance(a.url).image(id)

    // C's host is taken: the attacker has its peer key and the mesh secret, and runs its own code.
    await c.kill('SIGKILL')
    const key = await loadOrCreatePeerKey(c.dataDir)
    const signer = new PeerRecordSigner({ key })
    const work = await tmpDir('peerglance-attacker-')
    dirs.push(work)
    const store = new LevelMetadataStore({ path: join(work, 'db'), signer })
    await store.start()
    const node = await createMeshNode({ privateKey: key, membership: { secret: KEY }, bootstrap: [multiaddrOf(a), multiaddrOf(b)] })
    // The attacker's own code: once it holds the image, it takes nothing more from the others.
    let deaf = false
    const replica: Replica = {
      get replicaId () { return store.replicaId },
      records: () => store.records(),
      versionOf: record => store.versionOf(record),
      get: (kind, key) => store.get(kind, key),
      merge: async (records, from) => deaf ? 0 : await store.merge(records, from),
      onChange: listener => store.onChange(listener)
    }
    const sync = new MetadataSync({ libp2p: node as any, replica, logger: silentLogger })
    try {
      await node.start()
      await sync.start()
      await waitFor(() => store.getImage(id)?.status === 'active', { what: 'the attacker holding the image record' })
      deaf = true
      // A new manifest, checksum and hash, under a fresh (later) clock, signed with C's real key.
      const evil = randomBytes(original.length)
      const forged: ImageRecord = { ...store.getImage(id)!, checksum: 'e'.repeat(32), os_hash_value: 'f'.repeat(128), size: evil.length }
      await store.dataAdded(forged, { size: evil.length, chunkSize: 1024 * 1024, cids: ['bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'], md5: forged.checksum!, sha512: forged.os_hash_value!, staged: false })
      // And a record no API would accept: a property value of 1 MB on a new image.
      const oversized = { ...store.getImage(id)!, id: '5a0c2a8e-0d7b-4f55-9a3e-3c0d6f1b2a11', status: 'queued' as const, checksum: null, os_hash_value: null, size: null, properties: { huge: 'x'.repeat(1_000_000) } }
      await store.putImage(oversized)
      for (const peer of node.getPeers()) await sync.syncWith(peer)

      for (const agent of [a, b]) {
        const refused = await waitFor(() => logsMatching(agent.logs, 'refused a record from a peer').find(l => l.key === id), { what: 'the forged record refused', timeoutMs: 30_000 })
        expect(refused).toMatchObject({ reason: 'write-once', peer: peerIdOf(c) })
        await waitFor(() => logsMatching(agent.logs, 'refused a record from a peer').some(l => l.key === oversized.id && l.reason === 'invalid'), { what: 'the oversized record refused', timeoutMs: 30_000 })
        expect(await glance(agent.url).find(oversized.id)).toBeUndefined()
        expect(await metric(agent.url, 'peerglance_records_rejected_total')).toBeGreaterThanOrEqual(2)
        expect(await glance(agent.url).image(id)).toMatchObject({ checksum: honest.checksum, os_hash_value: honest.os_hash_value, size: original.length })
        const got = await download(agent.url, `/v2/images/${id}/file`)
        expect(got.status).toBe(200)
        expect(got.sha512).toBe(sha512(original))
      }
    } finally {
      await sync.stop()
      await node.stop()
      await store.stop()
    }
  })
})

describe('two uploads of one image racing on two agents', () => {
  it('end with one winner on both agents: same checksum, and the bytes each serves match it', async () => {
    mesh = track(await meshOf(2))
    const [a, b] = mesh.agents
    const { id } = await glance(a.url).create({ name: 'raced' })
    await waitFor(async () => await glance(b.url).find(id) != null, { what: 'B seeing the image' })
    const fromA = randomBytes(2 * 1024 * 1024)
    const fromB = randomBytes(2 * 1024 * 1024)
    const results = await Promise.allSettled([glance(a.url).upload(id, fromA), glance(b.url).upload(id, fromB)])
    expect(results.some(r => r.status === 'fulfilled')).toBe(true)
    const [onA, onB] = await waitFor(async () => {
      const docs = await Promise.all([glance(a.url).image(id), glance(b.url).image(id)])
      return docs.every(d => d.status === 'active') && docs[0].os_hash_value === docs[1].os_hash_value && docs
    }, { what: 'both agents showing the same data', timeoutMs: 15_000 })
    expect(onA.checksum).toBe(onB.checksum)
    const winner = [fromA, fromB].find(bytes => sha512(bytes) === onA.os_hash_value)
    expect(winner).toBeDefined()
    await sleep(500)
    for (const agent of [a, b]) {
      expect((await glance(agent.url).image(id)).os_hash_value).toBe(onA.os_hash_value)
      const got = await download(agent.url, `/v2/images/${id}/file`)
      expect(got.sha512).toBe(sha512(winner!))
    }
    console.log(`uploads: A ${results[0].status}, B ${results[1].status}; winner ${winner === fromA ? 'A' : 'B'}`)
  })
})
