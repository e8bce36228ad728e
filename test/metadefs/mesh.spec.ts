import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import type { MetadefRecord, Replica } from '@peerglance/interface'
import { MetadataSync, PeerRecordSigner, createMeshNode, loadOrCreatePeerKey } from '@peerglance/mesh'
import { LevelMetadataStore } from '@peerglance/metadata-store'
import { agentStatus, meshOf, multiaddrOf, peerIdOf, tmpDir, waitFor } from '@peerglance/testing'
import { configFile, logsMatching, meshPerTest, metric } from '../mesh/helpers.ts'
import { silentLogger } from '@peerglance/interface'

const BIN = fileURLToPath(new URL('../../packages/agent/bin/peerglance.js', import.meta.url))
const DEBIAN_METADEFS = '/usr/share/glance-common/metadefs'
const NS = '/v2/metadefs/namespaces'
const KEY = 'metadefs-spec-mesh-key-0123456789ab'

const { set: track, dirs } = meshPerTest()

async function call (url: string, method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { accept: 'application/json', ...body === undefined ? {} : { 'content-type': 'application/json' } },
    ...body === undefined ? {} : { body: JSON.stringify(body) }
  })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}

const names = async (url: string): Promise<string[]> => (await call(url, 'GET', `${NS}?limit=1000`)).json.namespaces.map((n: { namespace: string }) => n.namespace).sort()

describe('metadata definitions across a mesh of agent processes', () => {
  it('a catalog loaded on one agent, and each later change on any agent, reads the same on every agent', async () => {
    const mesh = track(await meshOf(3))
    const [a, b, c] = mesh.agents
    const load = await new Promise<number>(resolve => {
      execFile(process.execPath, [BIN, 'metadefs', 'load', DEBIAN_METADEFS, '--url', a.url], { timeout: 120_000 }, err => { resolve(err == null ? 0 : (err as { code: number }).code) })
    })
    expect(load).toBe(0)
    const expected = await names(a.url)
    expect(expected.length).toBeGreaterThan(20)
    for (const agent of [b, c]) {
      await waitFor(async () => (await names(agent.url)).length === expected.length, { what: 'the loaded catalog on every agent', timeoutMs: 20_000 })
      expect(await names(agent.url)).toEqual(expected)
      expect((await call(agent.url, 'GET', `${NS}/OS::Compute::Libvirt`)).json).toEqual((await call(a.url, 'GET', `${NS}/OS::Compute::Libvirt`)).json)
    }

    // Created on B (with contents), renamed on C, an object deleted on A: everyone sees all of it.
    expect((await call(b.url, 'POST', NS, { namespace: 'Mesh::Test', visibility: 'public', objects: [{ name: 'o1' }, { name: 'o2' }], tags: [{ name: 't' }] })).status).toBe(201)
    await waitFor(async () => (await call(c.url, 'GET', `${NS}/Mesh::Test`)).status === 200, { what: 'the namespace on C' })
    expect((await call(c.url, 'PUT', `${NS}/Mesh::Test`, { namespace: 'Mesh::Renamed', visibility: 'public' })).status).toBe(200)
    await waitFor(async () => (await call(a.url, 'GET', `${NS}/Mesh::Renamed`)).status === 200, { what: 'the rename on A' })
    expect((await call(a.url, 'DELETE', `${NS}/Mesh::Renamed/objects/o1`)).status).toBe(204)
    for (const agent of [a, b, c]) {
      await waitFor(async () => (await call(agent.url, 'GET', `${NS}/Mesh::Renamed`)).json?.objects?.length === 1, { what: 'the deletion everywhere' })
      const shown = (await call(agent.url, 'GET', `${NS}/Mesh::Renamed`)).json
      expect(shown.objects.map((o: { name: string }) => o.name)).toEqual(['o2'])
      expect(shown.tags).toEqual([{ name: 't' }])
      expect((await call(agent.url, 'GET', `${NS}/Mesh::Test`)).status).toBe(404)
    }
    // Every record, every field: the agents' replicas end equal.
    await waitFor(async () => new Set(await Promise.all([a, b, c].map(async x => (await agentStatus(x.url)).stateRoot))).size === 1, { what: 'equal state roots' })
  })

  it('a compromised member\'s metadef records that the API would refuse are refused on merge by every other agent', async () => {
    const config = await configFile(`mesh:\n  key: ${KEY}\n`, dirs)
    const mesh = track(await meshOf(3, { argsOf: () => ['--config', config] }))
    const [a, b, c] = mesh.agents
    expect((await call(a.url, 'POST', NS, { namespace: 'Honest::NS', visibility: 'public', protected: true })).status).toBe(201)
    await waitFor(async () => (await call(c.url, 'GET', `${NS}/Honest::NS`)).status === 200, { what: 'the honest namespace on C' })

    // C's host is taken: the attacker has its peer key and the mesh secret, and runs its own code.
    await c.kill('SIGKILL')
    const key = await loadOrCreatePeerKey(c.dataDir)
    const signer = new PeerRecordSigner({ key })
    const work = await tmpDir('peerglance-metadef-attacker-')
    dirs.push(work)
    const store = new LevelMetadataStore({ path: join(work, 'db'), signer })
    await store.start()
    const node = await createMeshNode({ privateKey: key, membership: { secret: KEY }, bootstrap: [multiaddrOf(a), multiaddrOf(b)] })
    const replica: Replica = {
      get replicaId () { return store.replicaId },
      records: () => store.records(),
      versionOf: record => store.versionOf(record),
      get: (kind, k) => store.get(kind, k),
      merge: async (records, from) => await store.merge(records, from),
      onChange: listener => store.onChange(listener)
    }
    const sync = new MetadataSync({ libp2p: node as any, replica, logger: silentLogger })
    try {
      await node.start()
      await sync.start()
      const honest = await waitFor(() => [...store.metadefs()].find(d => d.name === 'Honest::NS'), { what: 'the attacker holding the namespace' })
      const at = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
      // Validly signed with C's key, but no API would store them: a namespace taken private with
      // an unknown attribute, and a new namespace whose name is far too long.
      const forged: MetadefRecord[] = [
        { ...honest, body: { ...honest.body, visibility: 'private', injected: '<script>' }, updated_at: at },
        { type: 'namespace', id: '7b0b6f56-4b4f-4f9e-9a55-6b2f4c1d2e3f', namespace: null, name: 'X'.repeat(200), body: { visibility: 'public' }, created_at: at, updated_at: at, deleted: false }
      ]
      await store.putMetadefs(forged)
      for (const peer of node.getPeers()) await sync.syncWith(peer)
      for (const agent of [a, b]) {
        for (const record of forged) {
          const refused = await waitFor(() => logsMatching(agent.logs, 'refused a record from a peer').find(l => l.key === `namespace!${record.id}`), { what: 'the forged definition refused', timeoutMs: 30_000 })
          expect(refused).toMatchObject({ kind: 'metadef', reason: 'invalid', peer: peerIdOf(c) })
        }
        expect(await metric(agent.url, 'peerglance_records_rejected_total')).toBeGreaterThanOrEqual(2)
        expect((await call(agent.url, 'GET', `${NS}/Honest::NS`)).json).toMatchObject({ visibility: 'public', protected: true })
        expect((await call(agent.url, 'GET', `${NS}/Honest::NS`)).json.injected).toBeUndefined()
        expect(await names(agent.url)).toEqual(['Honest::NS'])
      }
    } finally {
      await sync.stop()
      await node.stop()
      await store.stop()
    }
  })
})
