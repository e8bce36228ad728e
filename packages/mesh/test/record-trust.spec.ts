import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { defaultConfig } from '@peerglance/config'
import { GlancePolicy, MetadefService, replicationRules } from '@peerglance/glance-domain'
import type { ImageRecord, Manifest, MetadefRecord, RejectedRecord, ReplicatedRecord } from '@peerglance/interface'
import { LevelMetadataStore } from '@peerglance/metadata-store'
import { PeerRecordSigner, loadOrCreatePeerKey } from '../src/index.ts'

const ID = '6f1f2c1e-6d1c-4a53-9a53-1d6f0c2b9e01'
const dirs: string[] = []
const stores: LevelMetadataStore[] = []
afterEach(async () => {
  for (const s of stores.splice(0)) await s.stop()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

interface Agent { store: LevelMetadataStore, signer: PeerRecordSigner, rejected: RejectedRecord[] }

/** One agent's metadata store as the agent wires it: its own key, the API's rules. */
async function agent (opts: { revoked?: string[], rules?: boolean } = {}): Promise<Agent> {
  const dir = await mkdtemp(join(tmpdir(), 'record-trust-'))
  dirs.push(dir)
  const signer = new PeerRecordSigner({ key: await loadOrCreatePeerKey(dir), revoked: opts.revoked })
  const store = new LevelMetadataStore({ path: join(dir, 'db'), signer, ...opts.rules === false ? {} : { rules: replicationRules({ ...defaultConfig().glance, userStorageQuota: 0 }) } })
  await store.start()
  stores.push(store)
  const rejected: RejectedRecord[] = []
  store.onRejected(r => { rejected.push(r) })
  return { store, signer, rejected }
}

function image (over: Partial<ImageRecord> = {}): ImageRecord {
  return {
    id: ID, name: 'img', status: 'queued', visibility: 'private', protected: false, os_hidden: false, owner: 'p', checksum: null,
    os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, container_format: 'bare', disk_format: 'raw',
    min_ram: 0, min_disk: 0, tags: [], created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z', properties: {}, ...over
  }
}
const manifest = (cid: string, md5: string): Manifest => ({ size: 3, chunkSize: 4, cids: [cid], md5, sha512: `${md5}-sha`, staged: false })
const active = (md5: string): ImageRecord => image({ status: 'active', size: 3, checksum: md5, os_hash_algo: 'sha512', os_hash_value: `${md5}-sha` })

async function activate (a: Agent, md5: string, cid = `bafk${md5}`): Promise<void> {
  await a.store.dataAdded(active(md5), manifest(cid, md5))
}

const record = (a: Agent): ReplicatedRecord => structuredClone(a.store.get('image', ID)!)

describe('records from peers', () => {
  it('are merged when signed by the agent that wrote them, and stay verifiable after later writes by others', async () => {
    const a = await agent()
    const b = await agent()
    const c = await agent()
    await a.store.putImage(image({ properties: { x: '1', y: '2' } }))
    expect(await b.store.merge([record(a)])).toBe(1)
    await b.store.putImage({ ...b.store.getImage(ID)!, properties: { x: '1', y: 'changed on b' } })
    // C gets a record mixing writes of A and B, where B's write replaced one field of A's.
    expect(await c.store.merge([record(b)])).toBe(1)
    expect(c.store.getImage(ID)!.properties).toEqual({ x: '1', y: 'changed on b' })
    expect(c.rejected).toEqual([])
  })

  it('are refused when unsigned, tampered with, or signed by a key other than the writer\'s', async () => {
    const a = await agent()
    const b = await agent()
    const mallory = await agent()
    await a.store.putImage(image())
    const unsigned = record(a)
    delete unsigned.w
    const tampered = record(a)
    tampered.fields.name.v = 'renamed in transit'
    // Mallory re-signs A's write with its own key: the clock names A's replica, not Mallory's.
    const resigned = record(a)
    const clock = resigned.fields.name.c
    resigned.w![clock] = { p: mallory.signer.id, s: mallory.signer.sign(new Uint8Array(32)) }
    for (const bad of [unsigned, tampered, resigned]) expect(await b.store.merge([bad], 'peer-x')).toBe(0)
    expect(b.store.getImage(ID)).toBeUndefined()
    expect(b.rejected.map(r => [r.reason, r.from])).toEqual([['signature', 'peer-x'], ['signature', 'peer-x'], ['signature', 'peer-x']])
    expect(b.rejected[1].detail).toContain('bad signature')
    expect(b.rejected[2].detail).toContain('not the agent whose clock it carries')
  })

  it('refused once are not judged and reported again, while an honest copy with the same clocks still gets in', async () => {
    const a = await agent()
    const b = await agent()
    await a.store.putImage(image())
    const tampered = record(a)
    tampered.fields.name.v = 'renamed in transit'
    for (let i = 0; i < 3; i++) expect(await b.store.merge([structuredClone(tampered)])).toBe(0)
    expect(b.rejected).toHaveLength(1)
    expect(await b.store.merge([record(a)])).toBe(1)
    expect(b.store.getImage(ID)!.name).toBe('img')
  })

  it('are refused when signed by a revoked agent', async () => {
    const a = await agent()
    const b = await agent({ revoked: [a.signer.id] })
    await a.store.putImage(image())
    expect(await b.store.merge([record(a)])).toBe(0)
    expect(b.rejected[0]).toMatchObject({ reason: 'signature' })
  })

  it('are held to the API\'s rules: schema, status values, property limits, quotas and the status table', async () => {
    const b = await agent()
    const cases: Array<[string, Partial<ImageRecord>]> = [
      ['status', { status: 'bogus' as never }],
      ['visibility', { visibility: 'everyone' as never }],
      ['name', { name: 'n'.repeat(256) }],
      ['checksum', { checksum: 'c'.repeat(33) }],
      ['size', { size: 'big' as never }],
      ['property name', { properties: { ['k'.repeat(256)]: 'v' } }],
      ['property value', { properties: { k: 'v'.repeat(65_536) } }],
      ['properties', { properties: Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`p${i}`, 'v'])) }],
      ['tags', { tags: Array.from({ length: 129 }, (_, i) => `t${i}`) }],
      ['disk_format', { disk_format: 'exe' }]
    ]
    for (const [what, over] of cases) {
      const mallory = await agent({ rules: false })
      await mallory.store.putImage(image(over))
      expect(await b.store.merge([record(mallory)]), what).toBe(0)
    }
    expect(b.rejected.map(r => r.reason)).toEqual(cases.map(() => 'invalid'))
    expect(b.store.getImage(ID)).toBeUndefined()

    // A legal value at the limits is accepted.
    const honest = await agent()
    await honest.store.putImage(image({ properties: { ['k'.repeat(255)]: 'é'.repeat(32_767) } }))
    expect(await b.store.merge([record(honest)])).toBe(1)
  })

  it('may not move an image to a status the state table forbids, nor carry a clock far ahead', async () => {
    const a = await agent()
    const b = await agent()
    await activate(a, 'aaa')
    await b.store.merge([record(a)])
    const mallory = await agent({ rules: false })
    await mallory.store.merge([record(a)])
    await mallory.store.putImage({ ...mallory.store.getImage(ID)!, status: 'killed' })
    expect(await b.store.merge([record(mallory)])).toBe(0)
    expect(b.rejected.at(-1)).toMatchObject({ reason: 'write-once', detail: 'sets status killed on an image that has its data' })
    // A killed image never becomes active again.
    const killedId = '6f1f2c1e-6d1c-4a53-9a53-1d6f0c2b9e02'
    await a.store.putImage(image({ id: killedId, status: 'killed' }))
    await b.store.merge([structuredClone(a.store.get('image', killedId)!)])
    await mallory.store.merge([structuredClone(a.store.get('image', killedId)!)])
    await mallory.store.dataAdded({ ...active('zzz'), id: killedId }, manifest('bafkzzz', 'zzz'))
    expect(await b.store.merge([structuredClone(mallory.store.get('image', killedId)!)])).toBe(0)
    expect(b.rejected.at(-1)).toMatchObject({ reason: 'invalid', detail: 'status killed cannot become active' })

    const ahead = record(a)
    const clock = `${String(Date.now() + 3_600_000).padStart(15, '0')}.000000.${ahead.fields.name.c.split('.')[2]}`
    ahead.fields.name = { v: 'from the future', c: clock }
    expect(await b.store.merge([ahead])).toBe(0)
    expect(b.rejected.at(-1)).toMatchObject({ reason: 'clock' })
    expect(b.store.getImage(ID)!.status).toBe('active')
  })
})

describe('an active image\'s data', () => {
  it('is never changed by a validly signed record from a member, whatever its clock', async () => {
    const a = await agent()
    const b = await agent()
    const mallory = await agent()
    await activate(a, 'aaa')
    await b.store.merge([record(a)])
    await mallory.store.merge([record(a)])
    // Mallory (a member: its key signs) rewrites the data as an upload of its own would.
    await mallory.store.dataAdded({ ...mallory.store.getImage(ID)!, checksum: 'evil', os_hash_value: 'evil-sha' }, manifest('bafkevil', 'evil'))
    // ...and, separately, only the checksum and hash with the manifest left alone.
    const sneaky = await agent()
    await sneaky.store.merge([record(a)])
    await sneaky.store.putImage({ ...sneaky.store.getImage(ID)!, checksum: 'evil', os_hash_value: 'evil-sha' })
    expect(await b.store.merge([record(mallory)])).toBe(0)
    expect(await b.store.merge([record(sneaky)])).toBe(0)
    expect(b.rejected.map(r => r.reason)).toEqual(['write-once', 'write-once'])
    expect(b.store.getImage(ID)).toMatchObject({ status: 'active', checksum: 'aaa', os_hash_value: 'aaa-sha' })
    expect(b.store.manifestCidOf(ID)).toBe(a.store.manifestCidOf(ID))
  })

  it('of two uploads racing on two agents, ends as the earlier one on every agent, in any order', async () => {
    const a = await agent()
    const b = await agent()
    const c = await agent()
    const d = await agent()
    await a.store.putImage(image())
    for (const other of [b, c, d]) await other.store.merge([record(a)])
    await activate(a, 'aaa')
    await new Promise(resolve => setTimeout(resolve, 5))
    await activate(b, 'bbb')
    const fromA = record(a)
    const fromB = record(b)
    await a.store.merge([fromB])
    await b.store.merge([fromA])
    await c.store.merge([fromA])
    await c.store.merge([fromB])
    await d.store.merge([fromB])
    await d.store.merge([fromA])
    for (const x of [a, b, c, d]) expect(x.store.getImage(ID)).toMatchObject({ status: 'active', checksum: 'aaa' })
    // B now holds A's data; what it sends back is accepted by A: the agents converge.
    expect(await a.store.merge([record(b)])).toBe(0)
    expect(a.rejected.map(r => r.reason)).toEqual(['write-once'])
    expect(new Set([a, b, c, d].map(x => x.store.versionOf(x.store.get('image', ID)!))).size).toBe(1)
  })

  it('is deleted with the image: a tombstone still wins', async () => {
    const a = await agent()
    const b = await agent()
    await activate(a, 'aaa')
    await b.store.merge([record(a)])
    await a.store.dataRemoved({ ...a.store.getImage(ID)!, status: 'deleted' })
    expect(await b.store.merge([record(a)])).toBe(1)
    expect(b.store.getImage(ID)!.status).toBe('deleted')
    expect(b.store.manifestCidOf(ID)).toBeNull()
  })
})

describe('metadata definitions from peers', () => {
  const NS_ID = '0d4c3f7e-2b1a-4c5d-8e9f-0a1b2c3d4e5f'
  const at = '2026-01-01T00:00:00Z'
  const def = (over: Partial<MetadefRecord>): MetadefRecord => ({ type: 'namespace', id: NS_ID, namespace: null, name: 'OS::Test', body: { visibility: 'public', protected: false, owner: 'admin' }, created_at: at, updated_at: at, deleted: false, ...over })
  const records = (a: Agent): ReplicatedRecord[] => [...a.store.records()].filter(r => r.kind === 'metadef').map(r => structuredClone(r))
  const service = (a: Agent): MetadefService => new MetadefService({ metadata: a.store, policy: new GlancePolicy() }, { ...defaultConfig().glance, userStorageQuota: 0 })
  const admin = { projectId: 'admin', userId: 'admin', roles: ['admin'] }

  it('are merged when signed and valid: a namespace with its contents reads the same on both agents', async () => {
    const a = await agent()
    const b = await agent()
    await service(a).createNamespace(admin, { namespace: 'OS::Test', visibility: 'public', objects: [{ name: 'o' }], tags: [{ name: 't' }], properties: { p: { title: 'P', type: 'string' } }, resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'x_' }] })
    expect(await b.store.merge(records(a))).toBe(5)
    expect(b.rejected).toEqual([])
    const [onA, onB] = [service(a).getNamespace(admin, 'OS::Test'), service(b).getNamespace(admin, 'OS::Test')]
    expect(onB).toEqual(onA)
    expect(onB).toMatchObject({ objects: [{ name: 'o' }], tags: [{ name: 't' }], properties: { p: { title: 'P', type: 'string' } } })
  })

  it('are refused when forged in transit or not what the API would store, and change nothing', async () => {
    const a = await agent()
    const b = await agent()
    const mallory = await agent({ rules: false })
    await a.store.putMetadefs([def({})])
    const tampered = records(a)[0]
    tampered.fields.body.v = { visibility: 'private', protected: true, owner: 'mallory' }
    expect(await b.store.merge([tampered], 'peer-x')).toBe(0)
    // Validly signed by a member, but no API would have accepted these.
    const invalid = [
      def({ id: '1d4c3f7e-2b1a-4c5d-8e9f-0a1b2c3d4e5f', body: { visibility: 'shared' } }),
      def({ id: '2d4c3f7e-2b1a-4c5d-8e9f-0a1b2c3d4e5f', name: 'x'.repeat(81) }),
      def({ id: '3d4c3f7e-2b1a-4c5d-8e9f-0a1b2c3d4e5f', body: { script: '<x>' } }),
      def({ id: 'not-a-uuid' }),
      def({ type: 'property', id: '4d4c3f7e-2b1a-4c5d-8e9f-0a1b2c3d4e5f', namespace: NS_ID, name: 'p', body: { title: 'P', type: 'text' } }),
      def({ type: 'association', id: `${NS_ID}!OS::Other`, namespace: NS_ID, name: 'OS::Nova::Flavor', body: {} }),
      def({ type: 'bogus' as MetadefRecord['type'], id: '5d4c3f7e-2b1a-4c5d-8e9f-0a1b2c3d4e5f' })
    ]
    await mallory.store.putMetadefs(invalid)
    expect(await b.store.merge(records(mallory), 'mallory')).toBe(0)
    expect([...b.store.metadefs()]).toEqual([])
    expect(b.rejected.map(r => r.reason)).toEqual(['signature', ...invalid.map(() => 'invalid')])
    expect(await b.store.merge(records(a))).toBe(1)
    expect([...b.store.metadefs()].map(d => d.body)).toEqual([{ visibility: 'public', protected: false, owner: 'admin' }])
  })

  it('converge whatever order they arrive in: a deletion is final, and of two namespaces created with one name everyone shows the same', async () => {
    const a = await agent()
    const b = await agent()
    await a.store.putMetadefs([def({})])
    await b.store.merge(records(a))
    // A deletes it while B, later, changes it.
    await a.store.putMetadefs([def({ deleted: true })])
    await b.store.putMetadefs([def({ body: { visibility: 'private', protected: true, owner: 'admin' }, updated_at: '2026-01-01T00:00:01Z' })])
    await a.store.merge(records(b))
    await b.store.merge(records(a))
    for (const x of [a, b]) expect(() => service(x).getNamespace(admin, 'OS::Test')).toThrow(/was not found/)

    // Two agents create "OS::Twin" at once, each with its own id and contents.
    await service(a).createNamespace(admin, { namespace: 'OS::Twin', description: 'from a', objects: [{ name: 'oa' }] })
    await service(b).createNamespace(admin, { namespace: 'OS::Twin', description: 'from b', objects: [{ name: 'ob' }] })
    const [fromA, fromB] = [records(a), records(b)]
    await a.store.merge(fromB)
    await b.store.merge(fromA.reverse())
    const [onA, onB] = [service(a).getNamespace(admin, 'OS::Twin'), service(b).getNamespace(admin, 'OS::Twin')]
    expect(onA).toEqual(onB)
    expect((onA.objects as unknown[]).length).toBe(1)
    expect(service(a).listNamespaces(admin, {}).namespaces).toEqual(service(b).listNamespaces(admin, {}).namespaces)
    // Deleting the name deletes both twins: the hidden one does not come back in its place.
    await service(a).deleteNamespace(admin, 'OS::Twin')
    await b.store.merge(records(a))
    for (const x of [a, b]) expect(() => service(x).getNamespace(admin, 'OS::Twin')).toThrow(/was not found/)
  })
})
