import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAgent } from '@peerglance/testing'
import type { TestAgent } from '@peerglance/testing'
import { asProject, glance } from './client.ts'

let agent: TestAgent
let api: ReturnType<typeof glance>
const NS = '/v2/metadefs/namespaces'
let n = 0
const unique = (prefix: string): string => `${prefix}-${process.pid}-${++n}`

beforeAll(async () => {
  agent = await startAgent()
  api = glance(agent.url)
})
afterAll(async () => { await agent.stop() })

describe('metadef schemas', () => {
  it('serves the ten documents under Glance\'s names', async () => {
    const names: Record<string, string> = {
      namespace: 'namespace', namespaces: 'namespaces', resource_type: 'resource_type_association', resource_types: 'resource_type_associations',
      property: 'property', properties: 'properties', object: 'object', objects: 'objects', tag: 'tag', tags: 'tags'
    }
    for (const [path, name] of Object.entries(names)) {
      const res = await api.call('GET', `/v2/schemas/metadefs/${path}`)
      expect(res.status, path).toBe(200)
      expect(res.json.name, path).toBe(name)
    }
    const ns = (await api.call('GET', '/v2/schemas/metadefs/namespace')).json
    expect(ns.required).toEqual(['namespace'])
    expect(ns.additionalProperties).toBe(false)
    expect(ns.properties.visibility.enum).toEqual(['public', 'private'])
    expect(ns.definitions.property.additionalProperties.required).toEqual(['title', 'type'])
    const properties = (await api.call('GET', '/v2/schemas/metadefs/properties')).json
    expect(properties.properties.properties.type).toBe('object')
    expect(properties.properties.properties.additionalProperties.required).toEqual(['type', 'title'])
  })
})

describe('namespaces', () => {
  it('creates, lists, shows, protects, updates and deletes a namespace (tempest\'s flow)', async () => {
    const types = (await api.call('GET', '/v2/metadefs/resource_types')).json.resource_types.map((t: { name: string }) => t.name)
    expect(types).toContain('OS::Glance::Image')
    const name = unique('tempest-ns')
    const created = await api.call('POST', NS, {
      body: { namespace: name, visibility: 'public', description: 'Tempest', display_name: name, resource_type_associations: [{ name: types[0] }], protected: true }
    })
    expect(created.status).toBe(201)
    expect(created.headers.get('location')).toBe(`${agent.url}${NS}/${name}`)
    expect(created.json).toMatchObject({ namespace: name, visibility: 'public', protected: true, owner: 'admin', self: `${NS}/${name}`, schema: '/v2/schemas/metadefs/namespace', resource_type_associations: [{ name: types[0] }] })
    expect((await api.call('GET', NS)).json.namespaces.map((x: { namespace: string }) => x.namespace)).toContain(name)
    const shown = await api.call('GET', `${NS}/${name}`)
    expect(shown.json).toMatchObject({ namespace: name, visibility: 'public', description: 'Tempest', resource_type_associations: [{ name: types[0] }] })

    const refused = await api.call('DELETE', `${NS}/${name}`)
    expect(refused.status).toBe(403)
    expect(refused.json.message).toContain(`Metadata definition namespace ${name} is protected and cannot be deleted.`)

    const updated = await api.call('PUT', `${NS}/${name}`, { body: { namespace: name, description: 'Tempest', visibility: 'private', display_name: name, protected: false } })
    expect(updated.status).toBe(200)
    expect(updated.json).toMatchObject({ visibility: 'private', protected: false })
    expect((await api.call('DELETE', `${NS}/${name}`)).status).toBe(204)
    expect((await api.call('GET', `${NS}/${name}`)).status).toBe(404)
    // The name is free again.
    expect((await api.call('POST', NS, { body: { namespace: name } })).status).toBe(201)
  })

  it('refuses bad bodies with Glance\'s statuses and stores nothing', async () => {
    const name = unique('bad')
    expect((await api.call('POST', NS, { body: { description: 'no name' } })).json.message).toContain('\'namespace\' is a required property')
    expect((await api.call('POST', NS, { body: { namespace: name, visibility: 'shared' } })).status).toBe(400)
    expect((await api.call('POST', NS, { body: { namespace: name, bogus: 1 } })).status).toBe(400)
    expect((await api.call('POST', NS, { body: { namespace: name, created_at: 'x' } })).status).toBe(403)
    expect((await api.call('POST', NS, { raw: 'not json', headers: { 'content-type': 'application/json' } })).status).toBe(400)
    expect((await api.call('POST', NS)).status).toBe(400)
    // Two objects with one name: 409, and not even the namespace is stored.
    const dup = await api.call('POST', NS, { body: { namespace: name, objects: [{ name: 'o' }, { name: 'o' }] } })
    expect(dup.status).toBe(409)
    expect((await api.call('GET', `${NS}/${name}`)).status).toBe(404)
    expect((await api.call('POST', NS, { body: { namespace: name } })).status).toBe(201)
    expect((await api.call('POST', NS, { body: { namespace: name } })).status).toBe(409)
    expect((await api.call('PATCH', `${NS}/${name}`, { body: {} })).status).toBe(405)
  })

  it('renames a namespace with its contents, refusing a name in use', async () => {
    const [a, b, c] = [unique('a'), unique('b'), unique('c')]
    await api.call('POST', NS, { body: { namespace: a, objects: [{ name: 'obj' }], tags: [{ name: 't1' }] } })
    await api.call('POST', NS, { body: { namespace: b } })
    expect((await api.call('PUT', `${NS}/${a}`, { body: { namespace: b } })).status).toBe(409)
    expect((await api.call('PUT', `${NS}/${a}`, { body: { namespace: c } })).status).toBe(200)
    expect((await api.call('GET', `${NS}/${a}`)).status).toBe(404)
    const shown = (await api.call('GET', `${NS}/${c}`)).json
    expect(shown.objects.map((o: { name: string }) => o.name)).toEqual(['obj'])
    expect(shown.objects[0].self).toBe(`${NS}/${c}/objects/obj`)
    expect(shown.tags).toEqual([{ name: 't1' }])
  })

  it('pages with limit and marker, filters by visibility and resource type', async () => {
    const prefix = unique('page')
    for (const i of [1, 2, 3]) {
      await api.call('POST', NS, { body: { namespace: `${prefix}-${i}`, visibility: i === 2 ? 'public' : 'private', resource_type_associations: i === 3 ? [{ name: `${prefix}::Type` }] : [] } })
    }
    const page = await api.call('GET', `${NS}?limit=2&sort_key=namespace&sort_dir=asc&visibility=private`)
    expect(page.status).toBe(200)
    expect(page.json.namespaces.every((x: { visibility: string }) => x.visibility === 'private')).toBe(true)
    expect(page.json.next).toMatch(/marker=/)
    const byType = (await api.call('GET', `${NS}?resource_types=${encodeURIComponent(`${prefix}::Type`)}`)).json.namespaces
    expect(byType.map((x: { namespace: string }) => x.namespace)).toEqual([`${prefix}-3`])
    expect((await api.call('GET', '/v2/metadefs/resource_types')).json.resource_types.map((t: { name: string }) => t.name)).toContain(`${prefix}::Type`)
    expect((await api.call('GET', `${NS}?visibility=shared`)).status).toBe(400)
    expect((await api.call('GET', `${NS}?sort_dir=up`)).status).toBe(400)
    expect((await api.call('GET', `${NS}?limit=-1`)).status).toBe(400)
    expect((await api.call('GET', `${NS}?marker=nope-${prefix}`)).status).toBe(404)
  })
})

describe('objects, properties, tags, resource type associations', () => {
  it('creates, updates (renames) and deletes an object', async () => {
    const ns = unique('obj-ns')
    await api.call('POST', NS, { body: { namespace: ns } })
    const created = await api.call('POST', `${NS}/${ns}/objects`, { body: { name: 'o1', description: 'd', required: ['p'], properties: { p: { type: 'string', title: 'P', junk: 1 } } } })
    expect(created.status).toBe(201)
    expect(created.json).toMatchObject({ name: 'o1', description: 'd', required: ['p'], properties: { p: { type: 'string', title: 'P' } }, self: `${NS}/${ns}/objects/o1`, schema: '/v2/schemas/metadefs/object' })
    expect(created.json.properties.p.junk).toBeUndefined()
    expect((await api.call('POST', `${NS}/${ns}/objects`, { body: { name: 'o1' } })).status).toBe(409)
    expect((await api.call('GET', `${NS}/${ns}/objects/o1`)).json.name).toBe('o1')
    const renamed = await api.call('PUT', `${NS}/${ns}/objects/o1`, { body: { name: 'o2' } })
    expect(renamed.status).toBe(200)
    expect(renamed.json.name).toBe('o2')
    const list = (await api.call('GET', `${NS}/${ns}/objects`)).json
    expect(list.objects.map((o: { name: string }) => o.name)).toEqual(['o2'])
    expect(list.schema).toBe('v2/schemas/metadefs/objects')
    expect((await api.call('DELETE', `${NS}/${ns}/objects/o2`)).status).toBe(204)
    expect((await api.call('GET', `${NS}/${ns}/objects/o2`)).status).toBe(404)
    expect((await api.call('GET', `${NS}/nope-${ns}/objects`)).status).toBe(404)
  })

  it('manages properties, shown with a resource type\'s prefix when asked', async () => {
    const ns = unique('prop-ns')
    await api.call('POST', NS, { body: { namespace: ns, resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'hw_' }] } })
    const enumValues = ['xen', 'qemu', 'kvm']
    const created = await api.call('POST', `${NS}/${ns}/properties`, { body: { name: 'disk_bus', title: 'Disk bus', type: 'string', enum: enumValues } })
    expect(created.status).toBe(201)
    expect(created.json).toEqual({ name: 'disk_bus', title: 'Disk bus', type: 'string', enum: enumValues })
    expect((await api.call('POST', `${NS}/${ns}/properties`, { body: { name: 'x', type: 'string' } })).status).toBe(400)
    expect((await api.call('POST', `${NS}/${ns}/properties`, { body: { name: 'x', title: 'X', type: 'text' } })).status).toBe(400)
    expect((await api.call('GET', `${NS}/${ns}/properties`)).json).toEqual({ properties: { disk_bus: { title: 'Disk bus', type: 'string', enum: enumValues } } })
    expect((await api.call('GET', `${NS}/${ns}/properties/hw_disk_bus?resource_type=OS::Glance::Image`)).json.name).toBe('disk_bus')
    expect((await api.call('GET', `${NS}/${ns}/properties/disk_bus?resource_type=OS::Glance::Image`)).status).toBe(404)
    expect(Object.keys((await api.call('GET', `${NS}/${ns}?resource_type=OS::Glance::Image`)).json.properties)).toEqual(['hw_disk_bus'])
    const updated = await api.call('PUT', `${NS}/${ns}/properties/disk_bus`, { body: { name: 'disk_bus', title: 'Bus', type: 'string', enum: enumValues } })
    expect(updated.json.title).toBe('Bus')
    expect((await api.call('DELETE', `${NS}/${ns}/properties/disk_bus`)).status).toBe(204)
    expect((await api.call('GET', `${NS}/${ns}/properties`)).json).toEqual({ properties: {} })
  })

  it('replaces tags, appends with X-Openstack-Append, refuses duplicates regardless of case', async () => {
    const ns = unique('tag-ns')
    await api.call('POST', NS, { body: { namespace: ns } })
    const tags = [{ name: 'sample-tag1' }, { name: 'sample-tag2' }, { name: 'sample-tag3' }]
    const created = await api.call('POST', `${NS}/${ns}/tags`, { body: { tags } })
    expect(created.status).toBe(201)
    expect(created.json).toEqual({ tags })
    expect((await api.call('GET', `${NS}/${ns}/tags`)).json.tags).toHaveLength(3)
    expect((await api.call('POST', `${NS}/${ns}/tags`, { body: { tags: [{ name: 'only' }] } })).status).toBe(201)
    expect((await api.call('GET', `${NS}/${ns}/tags`)).json.tags.map((t: { name: string }) => t.name)).toEqual(['only'])
    expect((await api.call('POST', `${NS}/${ns}/tags`, { body: { tags: [{ name: 'ONLY' }] }, headers: { 'x-openstack-append': 'true' } })).status).toBe(409)
    expect((await api.call('POST', `${NS}/${ns}/tags`, { body: { tags: [{ name: 'more' }] }, headers: { 'x-openstack-append': 'true' } })).status).toBe(201)
    const one = await api.call('POST', `${NS}/${ns}/tags/single`)
    expect(one.status).toBe(201)
    expect(one.json.name).toBe('single')
    expect((await api.call('POST', `${NS}/${ns}/tags/Single`)).status).toBe(409)
    expect((await api.call('PUT', `${NS}/${ns}/tags/single`, { body: { name: 'renamed' } })).json.name).toBe('renamed')
    expect((await api.call('GET', `${NS}/${ns}/tags/renamed`)).status).toBe(200)
    expect((await api.call('DELETE', `${NS}/${ns}/tags/renamed`)).status).toBe(204)
    expect((await api.call('DELETE', `${NS}/${ns}/tags`)).status).toBe(204)
    expect((await api.call('GET', `${NS}/${ns}/tags`)).json.tags).toEqual([])
  })

  it('associates and dissociates resource types', async () => {
    const ns = unique('rt-ns')
    await api.call('POST', NS, { body: { namespace: ns } })
    const created = await api.call('POST', `${NS}/${ns}/resource_types`, { body: { name: 'OS::Nova::Flavor', prefix: 'hw:' } })
    expect(created.status).toBe(201)
    expect(created.json).toMatchObject({ name: 'OS::Nova::Flavor', prefix: 'hw:' })
    expect((await api.call('POST', `${NS}/${ns}/resource_types`, { body: { name: 'OS::Nova::Flavor' } })).status).toBe(409)
    expect((await api.call('GET', `${NS}/${ns}/resource_types`)).json.resource_type_associations.map((a: { name: string }) => a.name)).toEqual(['OS::Nova::Flavor'])
    expect((await api.call('DELETE', `${NS}/${ns}/resource_types/OS::Nova::Flavor`)).status).toBe(204)
    expect((await api.call('DELETE', `${NS}/${ns}/resource_types/OS::Nova::Flavor`)).status).toBe(404)
    expect((await api.call('GET', `${NS}/${ns}/resource_types`)).json.resource_type_associations).toEqual([])
  })

  it('keeps a protected namespace\'s contents', async () => {
    const ns = unique('prot')
    await api.call('POST', NS, { body: { namespace: ns, protected: true, objects: [{ name: 'o' }], tags: [{ name: 't' }], properties: { p: { title: 'P', type: 'string' } }, resource_type_associations: [{ name: 'OS::Nova::Server' }] } })
    for (const path of ['objects/o', 'tags/t', 'properties/p', 'resource_types/OS::Nova::Server', 'objects', 'tags', 'properties']) {
      expect((await api.call('DELETE', `${NS}/${ns}/${path}`)).status, path).toBe(403)
    }
    const shown = (await api.call('GET', `${NS}/${ns}`)).json
    expect([shown.objects.length, shown.tags.length, Object.keys(shown.properties).length, shown.resource_type_associations.length]).toEqual([1, 1, 1, 1])
  })
})

describe('metadef policy (Glance 25 defaults)', () => {
  it('lets only admins write, readers of the owner read, everyone read public namespaces, and hides private ones (404)', async () => {
    const [priv, pub] = [unique('priv'), unique('pub')]
    const alpha = glance(agent.url, asProject('alpha'))
    const alphaReader = glance(agent.url, asProject('alpha', 'reader'))
    const beta = glance(agent.url, asProject('beta'))
    expect((await alpha.call('POST', NS, { body: { namespace: priv } })).status).toBe(403)
    expect((await api.call('GET', `${NS}/${priv}`)).status).toBe(404)
    await api.call('POST', NS, { body: { namespace: priv, owner: 'alpha', objects: [{ name: 'o' }] } })
    await api.call('POST', NS, { body: { namespace: pub, owner: 'alpha', visibility: 'public' } })

    expect((await alphaReader.call('GET', `${NS}/${priv}`)).status).toBe(200)
    expect((await alphaReader.call('GET', `${NS}?limit=1000`)).json.namespaces.map((x: { namespace: string }) => x.namespace)).toEqual(expect.arrayContaining([priv, pub]))
    expect((await alphaReader.call('GET', `${NS}/${priv}/resource_types`)).status).toBe(200)
    expect((await alphaReader.call('GET', `${NS}/${priv}/objects/o`)).status).toBe(200)
    expect((await alpha.call('PUT', `${NS}/${priv}/objects/o`, { body: { name: 'x' } })).status).toBe(403)
    expect((await alpha.call('DELETE', `${NS}/${priv}`)).status).toBe(403)
    expect((await beta.call('GET', `${NS}/${priv}`)).status).toBe(404)
    expect((await beta.call('DELETE', `${NS}/${priv}`)).status).toBe(404)
    expect((await beta.call('GET', `${NS}/${priv}/objects`)).status).toBe(404)
    expect((await beta.call('GET', `${NS}/${pub}`)).status).toBe(200)
    expect((await beta.call('DELETE', `${NS}/${pub}`)).status).toBe(403)
    const listed = (await beta.call('GET', NS)).json.namespaces.map((x: { namespace: string }) => x.namespace)
    expect(listed).toContain(pub)
    expect(listed).not.toContain(priv)
    // No role at all: not even the list, and a 404 since it may not get_metadef_namespace either
    // (MetadefAPIPolicy checks that against the caller's own project; Glance 25 answers a
    // system-scoped token's list the same way).
    expect((await glance(agent.url, { 'x-project-id': 'gamma', 'x-roles': '' }).call('GET', NS)).status).toBe(404)
    expect((await api.call('GET', `${NS}/${priv}/objects/o`)).status).toBe(200)
  })
})

describe('fuzzing the metadefs API', () => {
  it('any JSON body to any metadef write: no 5xx, and a refusal stores nothing', async () => {
    const ns = unique('fuzz')
    await api.call('POST', NS, { body: { namespace: ns, objects: [{ name: 'o' }], tags: [{ name: 't' }], properties: { p: { title: 'P', type: 'string' } } } })
    const snapshot = (): string => JSON.stringify([...agent.agent.metadata.metadefs()])
    const keys = fc.constantFrom('namespace', 'name', 'visibility', 'protected', 'owner', 'description', 'display_name', 'objects', 'properties', 'tags',
      'resource_type_associations', 'required', 'title', 'type', 'enum', 'items', 'prefix', 'self', 'created_at', 'minimum', 'maxLength', '__proto__', 'constructor')
    const value = fc.oneof(fc.jsonValue(), fc.constantFrom('public', 'private', 'string', 'array', ns, 'o', 't', 'p'), fc.array(fc.record({ name: fc.oneof(fc.string(), fc.constantFrom('o', 't')) })),
      fc.dictionary(fc.string(), fc.record({ title: fc.string(), type: fc.constantFrom('string', 'integer', 'bogus') }, { requiredKeys: [] })))
    const body = fc.oneof(fc.dictionary(keys, value, { maxKeys: 5 }).map(o => JSON.stringify(o)), fc.json(), fc.string())
    const target = fc.constantFrom(['POST', NS], ['PUT', `${NS}/${ns}`], ['POST', `${NS}/${ns}/objects`], ['PUT', `${NS}/${ns}/objects/o`],
      ['POST', `${NS}/${ns}/properties`], ['PUT', `${NS}/${ns}/properties/p`], ['POST', `${NS}/${ns}/tags`], ['PUT', `${NS}/${ns}/tags/t`],
      ['POST', `${NS}/${ns}/resource_types`], ['POST', `${NS}/${ns}/tags/${encodeURIComponent('x'.repeat(81))}`])
    await fc.assert(fc.asyncProperty(target, body, async ([method, path], text) => {
      const before = snapshot()
      const r = await api.call(method, path, { raw: text, headers: { 'content-type': 'application/json' } })
      expect(r.status, r.text).toBeLessThan(500)
      if (r.status >= 400) expect(snapshot()).toBe(before)
    }), { numRuns: 300, interruptAfterTimeLimit: 3000, markInterruptAsFailure: false })
    expect((await api.call('GET', '/versions')).status).toBe(200)
  })
})

describe('metadef policy, legacy defaults (policy.enforceNewDefaults: false)', () => {
  it('lets any role read what the database layer shows, and still only admins write', async () => {
    await using legacy = await startAgent({ config: { policy: { enforceNewDefaults: false } } })
    const admin = glance(legacy.url)
    const noRoles = glance(legacy.url, { 'x-project-id': 'gamma', 'x-roles': '' })
    const alpha = glance(legacy.url, asProject('alpha'))
    await admin.call('POST', NS, { body: { namespace: 'Legacy::Public', visibility: 'public', objects: [{ name: 'o' }] } })
    await admin.call('POST', NS, { body: { namespace: 'Legacy::Private', owner: 'beta' } })
    // metadef_default ('') is ORed into every read rule; visibility is still the database layer's.
    expect((await noRoles.call('GET', NS)).json.namespaces.map((x: { namespace: string }) => x.namespace)).toEqual(['Legacy::Public'])
    expect((await noRoles.call('GET', `${NS}/Legacy::Public/objects/o`)).status).toBe(200)
    expect((await noRoles.call('GET', `${NS}/Legacy::Private`)).status).toBe(404)
    expect((await alpha.call('POST', NS, { body: { namespace: 'Legacy::Mine' } })).status).toBe(403)
    expect((await alpha.call('DELETE', `${NS}/Legacy::Public`)).status).toBe(403)
  })

  it('follows an operator\'s override of metadef_admin', async () => {
    await using custom = await startAgent({ config: { policy: { rules: { metadef_admin: 'role:admin or role:catalog_editor' } } } })
    const editor = glance(custom.url, { 'x-project-id': 'ops', 'x-roles': 'catalog_editor,reader' })
    expect((await editor.call('POST', NS, { body: { namespace: 'Edited::NS' } })).status).toBe(201)
    expect((await editor.call('POST', `${NS}/Edited::NS/tags/t`)).status).toBe(201)
    expect((await glance(custom.url, asProject('ops')).call('DELETE', `${NS}/Edited::NS`)).status).toBe(403)
  })
})
