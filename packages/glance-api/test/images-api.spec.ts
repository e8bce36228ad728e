import { createHash, randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAgent } from '@peerglance/testing'
import type { TestAgent } from '@peerglance/testing'
import { asProject, glance } from './client.ts'

let agent: TestAgent
let api: ReturnType<typeof glance>

beforeAll(async () => {
  agent = await startAgent({ config: { chunks: { chunkSize: 64 * 1024 } } })
  api = glance(agent.url)
})
afterAll(async () => { await agent.stop() })

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex')
const sha512 = (b: Buffer): string => createHash('sha512').update(b).digest('hex')

describe('version discovery', () => {
  it('answers 300 with the versions document on the root and 200 on /versions', async () => {
    const root = await api.call('GET', '/')
    expect(root.status).toBe(300)
    const versions = await api.call('GET', '/versions')
    expect(versions.status).toBe(200)
    expect(versions.json.versions.find((v: any) => v.status === 'CURRENT').id).toBe('v2.17')
    expect(versions.json.versions[0].links[0].href).toBe(`${agent.url}/v2/`)
    expect((await api.call('GET', '/v1/images')).status).toBe(300)
  })

  it('serves /v2.N aliases as /v2', async () => {
    expect((await api.call('GET', '/v2.6/images')).status).toBe(200)
    expect((await api.call('GET', '/v2.17/schemas/image')).json.name).toBe('image')
  })

  it('sends a request id on every response, reusing the caller\'s', async () => {
    const mine = await api.call('GET', '/v2/images', { headers: { 'x-openstack-request-id': 'req-mine' } })
    expect(mine.headers.get('x-openstack-request-id')).toBe('req-mine')
    const fresh = await api.call('GET', '/v2/images/nope')
    expect(fresh.headers.get('x-openstack-request-id')).toMatch(/^req-[0-9a-f-]{36}$/)
    const long = await api.call('GET', '/v2/images', { headers: { 'x-openstack-request-id': 'x'.repeat(65) } })
    expect(long.status).toBe(431)
  })
})

describe('create', () => {
  it('creates a queued image with Glance defaults and an absolute Location', async () => {
    const r = await api.create({ name: 'cirros', os_distro: 'cirros', tags: ['a', 'a', 'b'] })
    expect(r.status).toBe(201)
    expect(r.headers.get('location')).toBe(`${agent.url}/v2/images/${r.json.id}`)
    expect(r.headers.get('content-type')).toBe('application/json')
    expect(r.headers.get('openstack-image-import-methods')).toBe('glance-direct')
    expect(r.json).toMatchObject({
      name: 'cirros', status: 'queued', visibility: 'shared', protected: false, os_hidden: false, owner: 'admin',
      checksum: null, size: null, virtual_size: null, min_ram: 0, min_disk: 0, os_distro: 'cirros',
      self: `/v2/images/${r.json.id}`, file: `/v2/images/${r.json.id}/file`, schema: '/v2/schemas/image'
    })
    expect(r.json.tags.sort()).toEqual(['a', 'b'])
    expect(r.json.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
  })

  it.each([
    [{ status: 'active' }, 403, 'Attribute \'status\' is read-only.'],
    [{ checksum: 'x' }, 403, 'read-only'],
    [{ self: 'x' }, 403, 'read-only'],
    [{ os_glance_foo: 'x' }, 403, 'Attribute \'os_glance_foo\' is reserved.'],
    [{ locations: [] }, 403, 'reserved'],
    [{ deleted: 'x' }, 403, 'reserved'],
    [{ disk_format: 'floppy' }, 400, '\'floppy\' is not one of'],
    [{ container_format: 'box' }, 400, 'is not one of'],
    [{ id: 'not-a-uuid' }, 400, 'does not match'],
    [{ name: 'x'.repeat(256) }, 400, 'is too long'],
    [{ min_ram: -1 }, 400, 'Cannot be a negative value'],
    [{ min_disk: 'big' }, 400, 'is not of type \'integer\''],
    [{ protected: 'yes' }, 400, 'is not of type \'boolean\''],
    [{ hw_disk_bus: 7 }, 400, 'is not of type \'string\''],
    [{ visibility: 'everyone' }, 400, 'is not one of'],
    [{ kernel_id: 'nope' }, 400, 'does not match']
  ])('refuses %j with %i', async (body, status, message) => {
    const before = [...agent.agent.metadata.images()].length
    const r = await api.create(body)
    expect(r.status).toBe(status)
    expect(r.json.message).toContain(message)
    expect(r.json.code).toMatch(new RegExp(`^${status} `))
    expect([...agent.agent.metadata.images()].length).toBe(before)
  })

  it('refuses malformed JSON and non-object bodies with 400', async () => {
    const bad = await api.call('POST', '/v2/images', { raw: '{"name":', headers: { 'content-type': 'application/json' } })
    expect(bad.status).toBe(400)
    expect(bad.json.message).toContain('Malformed JSON in request body.')
    expect((await api.call('POST', '/v2/images', { raw: '"x"', headers: { 'content-type': 'application/json' } })).status).toBe(400)
    expect((await api.call('POST', '/v2/images', { raw: '[]', headers: { 'content-type': 'application/json' } })).status).toBe(400)
    expect((await api.call('POST', '/v2/images')).status).toBe(400)
  })

  it('refuses a duplicate id with 409, even of a deleted image', async () => {
    const id = crypto.randomUUID()
    expect((await api.create({ id })).status).toBe(201)
    expect((await api.create({ id })).status).toBe(409)
    expect((await api.call('DELETE', `/v2/images/${id}`)).status).toBe(204)
    expect((await api.create({ id })).status).toBe(409)
  })

  it('lets only admins publicize, and only owners create for their project', async () => {
    expect((await api.create({ visibility: 'public' }, asProject('p1'))).status).toBe(403)
    expect((await api.create({ owner: 'p2' }, asProject('p1'))).status).toBe(403)
    expect((await api.create({}, asProject('p1', 'reader'))).status).toBe(403)
    expect((await api.create({ visibility: 'community' }, asProject('p1'))).status).toBe(201)
  })

  it('enforces the property and tag quotas with 413', async () => {
    const props = Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`p${i}`, 'v']))
    expect((await api.create(props)).status).toBe(413)
    expect((await api.create({ tags: Array.from({ length: 129 }, (_, i) => `t${i}`) })).status).toBe(413)
  })
})

describe('update', () => {
  it('applies v2.1 add/replace/remove and v2.0 semantics', async () => {
    const { json: image } = await api.create({ name: 'a' })
    let r = await api.patch(image.id, [
      { op: 'replace', path: '/name', value: 'b' },
      { op: 'add', path: '/os_distro', value: 'debian' },
      { op: 'add', path: '/hw_disk_bus', value: 'scsi' },
      { op: 'add', path: '/min_ram', value: 512 },
      { op: 'replace', path: '/tags', value: ['x', 'y'] }
    ])
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({ name: 'b', os_distro: 'debian', hw_disk_bus: 'scsi', min_ram: 512, tags: ['x', 'y'] })
    r = await api.patch(image.id, [{ op: 'remove', path: '/hw_disk_bus' }])
    expect(r.json.hw_disk_bus).toBeUndefined()
    expect((await api.patch(image.id, [{ add: '/os_distro', value: 'x' }], '2.0')).status).toBe(409)
    expect((await api.patch(image.id, [{ add: '/name', value: 'x' }], '2.0')).status).toBe(409)
    expect((await api.patch(image.id, [{ replace: '/name', value: 'c' }], '2.0')).json.name).toBe('c')
    expect((await api.patch(image.id, [{ op: 'replace', path: '/missing', value: 'x' }])).status).toBe(409)
    expect((await api.patch(image.id, [{ op: 'remove', path: '/missing' }])).status).toBe(409)
    expect((await api.patch(image.id, [{ op: 'remove', path: '/name' }])).status).toBe(403)
    expect((await api.patch(image.id, [])).status).toBe(200)
  })

  it.each([
    [[{ op: 'move', path: '/name', value: 'x' }], 400],
    [[{ op: 'add', path: '/name' }], 400],
    [[{ op: 'add', path: 'name', value: 'x' }], 400],
    [[{ op: 'add', path: '/a/b', value: 'x' }], 400],
    [[{ op: 'add', path: '/tags/-', value: 'x' }], 400],
    [[{ op: 'replace', path: '/status', value: 'active' }], 403],
    [[{ op: 'replace', path: '/size', value: 1 }], 403],
    [[{ op: 'add', path: '/os_glance_foo', value: 'x' }], 403],
    [[{ op: 'add', path: '/locations/-', value: { url: 'http://x', metadata: {} } }], 403],
    [[{ op: 'replace', path: '/visibility', value: 'nope' }], 400],
    [[{ op: 'replace', path: '/protected', value: 'yes' }], 400],
    [[{ op: 'add', path: '/extra', value: 5 }], 400],
    [{ op: 'add' }, 400],
    [['x'], 400]
  ])('refuses patch %j with %i and changes nothing', async (ops, status) => {
    const { json: image } = await api.create({ name: 'keep' })
    const r = await api.patch(image.id, ops)
    expect(r.status).toBe(status)
    expect((await api.call('GET', `/v2/images/${image.id}`)).json).toEqual(image)
  })

  it('answers 415 with Accept-Patch for other media types', async () => {
    const { json: image } = await api.create()
    const r = await api.call('PATCH', `/v2/images/${image.id}`, { body: [] })
    expect(r.status).toBe(415)
    expect(r.headers.get('accept-patch')).toContain('application/openstack-images-v2.1-json-patch')
  })

  it('refuses format changes once the image has data', async () => {
    const { json: image } = await api.create()
    expect((await api.upload(image.id, Buffer.from('data'))).status).toBe(204)
    expect((await api.patch(image.id, [{ op: 'replace', path: '/disk_format', value: 'qcow2' }])).status).toBe(403)
  })
})

describe('list', () => {
  it('filters, sorts and pages with next links', async () => {
    const tag = `t-${randomBytes(4).toString('hex')}`
    const ids: string[] = []
    for (let i = 0; i < 7; i++) ids.push((await api.create({ name: `list-${i}`, tags: [tag], min_ram: i })).json.id)
    const seen: string[] = []
    let next: string | undefined = `/v2/images?tag=${tag}&limit=3&sort_key=name&sort_dir=asc`
    let pages = 0
    while (next != null && pages++ < 10) {
      const r = await api.call('GET', next)
      expect(r.status).toBe(200)
      seen.push(...r.json.images.map((i: any) => i.name))
      expect(r.json.first).toMatch(/^\/v2\/images\?/)
      next = r.json.next
    }
    expect(seen).toEqual(ids.map((_, i) => `list-${i}`))
    expect(pages).toBe(3)
    const desc = await api.call('GET', `/v2/images?tag=${tag}&sort=name:desc&limit=2`)
    expect(desc.json.images.map((i: any) => i.name)).toEqual(['list-6', 'list-5'])
    const inFilter = await api.call('GET', `/v2/images?name=in:list-1,list-3&tag=${tag}`)
    expect(inFilter.json.images.map((i: any) => i.name).sort()).toEqual(['list-1', 'list-3'])
    const byProp = await api.call('GET', `/v2/images?tag=${tag}&min_ram=4`)
    expect(byProp.json.images.map((i: any) => i.name)).toEqual(['list-4'])
  })

  it.each([
    'limit=-1', 'limit=x', 'sort_key=owner', 'sort_dir=up', 'sort=name:up', 'sort=name&sort_key=name',
    'visibility=everyone', 'member_status=maybe', 'os_hidden=yes', 'protected=True', 'size_min=big',
    'created_at=gt:notatime', 'changes-since=2020-01-01', 'marker=00000000-0000-0000-0000-000000000000',
    'sort_key=name&sort_key=id&sort_dir=asc&sort_dir=desc&sort_dir=asc'
  ])('refuses ?%s with 400', async (query) => {
    const r = await api.call('GET', `/v2/images?${query}`)
    expect(r.status).toBe(400)
    expect(r.json.code).toBe('400 Bad Request')
  })

  it('lists hidden images only when asked, and only them', async () => {
    const { json: hidden } = await api.create({ os_hidden: true, name: 'hidden-one' })
    const normal = await api.call('GET', '/v2/images?limit=1000')
    expect(normal.json.images.some((i: any) => i.id === hidden.id)).toBe(false)
    const onlyHidden = await api.call('GET', '/v2/images?os_hidden=true&limit=1000')
    expect(onlyHidden.json.images.every((i: any) => i.os_hidden === true)).toBe(true)
    expect(onlyHidden.json.images.some((i: any) => i.id === hidden.id)).toBe(true)
  })
})

describe('data', () => {
  it('round-trips bytes with checksums, Content-MD5 and Range', async () => {
    const data = randomBytes(200 * 1024 + 17)
    const { json: image } = await api.create()
    expect((await api.upload(image.id, data)).status).toBe(204)
    const shown = (await api.call('GET', `/v2/images/${image.id}`)).json
    expect(shown).toMatchObject({ status: 'active', size: data.length, virtual_size: data.length, checksum: md5(data), os_hash_algo: 'sha512', os_hash_value: sha512(data) })
    const full = await api.download(image.id)
    expect(full.status).toBe(200)
    expect(full.headers.get('content-md5')).toBe(md5(data))
    expect(full.headers.get('content-length')).toBe(String(data.length))
    expect(full.bytes.equals(data)).toBe(true)
    for (const [range, start, end] of [['bytes=0-0', 0, 0], ['bytes=65530-65540', 65530, 65540], ['bytes=100000-', 100000, data.length - 1], ['bytes=-10', data.length - 10, data.length - 1], ['bytes=-999999999', 0, data.length - 1], ['bytes=5-99999999', 5, data.length - 1]] as const) {
      const part = await api.download(image.id, { range })
      expect(part.status, range).toBe(206)
      expect(part.headers.get('content-range')).toBe(`bytes ${start}-${end}/${data.length}`)
      expect(part.bytes.equals(data.subarray(start, end + 1)), range).toBe(true)
    }
    expect((await api.download(image.id, { range: 'bytes=0-1,5-6' })).status).toBe(400)
    expect((await api.download(image.id, { range: `bytes=${data.length}-` })).status).toBe(416)
    expect((await api.download(image.id, { range: 'pages=1-2' })).status).toBe(416)
    expect((await api.download(image.id, { 'content-range': 'bytes 10-19/*' })).bytes.equals(data.subarray(10, 20))).toBe(true)
  })

  it('accepts a chunked upload with no length, and an empty one', async () => {
    const { json: image } = await api.create()
    const parts = [randomBytes(70_000), randomBytes(3)]
    const body = new ReadableStream({ start (c) { for (const p of parts) c.enqueue(p); c.close() } })
    expect((await api.upload(image.id, body as any)).status).toBe(204)
    expect((await api.download(image.id)).bytes.equals(Buffer.concat(parts))).toBe(true)
    const { json: empty } = await api.create()
    expect((await api.upload(empty.id, Buffer.alloc(0))).status).toBe(204)
    const shown = (await api.call('GET', `/v2/images/${empty.id}`)).json
    expect(shown).toMatchObject({ status: 'active', size: 0, checksum: md5(Buffer.alloc(0)) })
    const got = await api.download(empty.id)
    expect(got.status).toBe(200)
    expect(got.bytes.length).toBe(0)
  })

  it('answers 204 for an image without data', async () => {
    const { json: image } = await api.create()
    expect((await api.download(image.id)).status).toBe(204)
  })

  it.each([
    ['wrong content type', { 'content-type': 'text/plain' }, 415],
    ['size header that lies', { 'x-openstack-image-size': '5' }, 400],
    ['size header that is not a number', { 'x-openstack-image-size': 'many' }, 400]
  ])('refuses an upload with a %s and keeps the image queued with no chunk', async (_what, headers, status) => {
    const chunksBefore = await countChunks()
    const { json: image } = await api.create()
    const r = await api.upload(image.id, randomBytes(100_000), headers)
    expect(r.status).toBe(status)
    const shown = (await api.call('GET', `/v2/images/${image.id}`)).json
    expect(shown).toMatchObject({ status: 'queued', size: null, checksum: null })
    expect(await countChunks()).toBe(chunksBefore)
  })

  it('refuses an upload over image_size_cap with 413 and keeps nothing', async () => {
    const small = await startAgent({ config: { glance: { imageSizeCap: 100_000 }, chunks: { chunkSize: 16384 } } })
    try {
      const client = glance(small.url)
      const { json: image } = await client.create()
      expect((await client.upload(image.id, randomBytes(100_001))).status).toBe(413)
      expect((await client.call('GET', `/v2/images/${image.id}`)).json.status).toBe('queued')
      expect(await countChunks(small)).toBe(0)
      expect((await client.upload(image.id, randomBytes(100_000))).status).toBe(204)
    } finally { await small.stop() }
  })

  it('drops a deleted image\'s data: its chunk files go, except those another image still uses', async () => {
    const shared = randomBytes(64 * 1024)
    const chunksBefore = await countChunks()
    const { json: kept } = await api.create()
    expect((await api.upload(kept.id, shared)).status).toBe(204)
    const { json: doomed } = await api.create()
    expect((await api.upload(doomed.id, Buffer.concat([shared, randomBytes(2 * 64 * 1024)]))).status).toBe(204)
    expect(await countChunks()).toBe(chunksBefore + 3)
    expect((await api.call('DELETE', `/v2/images/${doomed.id}`)).status).toBe(204)
    expect(await countChunks()).toBe(chunksBefore + 1)
    expect((await api.download(kept.id)).bytes.equals(shared)).toBe(true)
  })

  it('refuses uploads before formats are set (400) and twice (409)', async () => {
    const { json: bare } = await api.call('POST', '/v2/images', { body: { name: 'noformat' } })
    expect((await api.upload(bare.id, Buffer.from('x'))).status).toBe(400)
    const { json: image } = await api.create()
    expect((await api.upload(image.id, Buffer.from('x'))).status).toBe(204)
    expect((await api.upload(image.id, Buffer.from('y'))).status).toBe(409)
  })

  it('refuses content that does not match disk_format with 415', async () => {
    const { json: image } = await api.create({ disk_format: 'qcow2' })
    const r = await api.upload(image.id, randomBytes(4096))
    expect(r.status).toBe(415)
    expect((await api.call('GET', `/v2/images/${image.id}`)).json.status).toBe('queued')
  })

  it('stages and imports with glance-direct', async () => {
    const data = randomBytes(150_000)
    const { json: image } = await api.create()
    expect((await api.call('PUT', `/v2/images/${image.id}/stage`, { raw: data, headers: { 'content-type': 'application/octet-stream' } })).status).toBe(204)
    const staged = (await api.call('GET', `/v2/images/${image.id}`)).json
    expect(staged).toMatchObject({ status: 'uploading', size: data.length })
    expect((await api.download(image.id)).status).toBe(204)
    expect((await api.call('POST', `/v2/images/${image.id}/import`, { body: { method: { name: 'web-download', uri: 'http://x' } } })).status).toBe(400)
    expect((await api.call('POST', `/v2/images/${image.id}/import`, { body: { method: { name: 'glance-direct' } } })).status).toBe(202)
    let status = ''
    for (let i = 0; i < 100 && status !== 'active'; i++) {
      status = (await api.call('GET', `/v2/images/${image.id}`)).json.status
      if (status !== 'active') await new Promise(resolve => setTimeout(resolve, 20))
    }
    expect(status).toBe('active')
    expect((await api.download(image.id)).bytes.equals(data)).toBe(true)
    // The task ends just after the image is active (tempest waits for both, in that order).
    let tasks: any[] = []
    for (let i = 0; i < 100 && tasks[0]?.status !== 'success'; i++) {
      tasks = (await api.call('GET', `/v2/images/${image.id}/tasks`)).json.tasks
      if (tasks[0]?.status !== 'success') await new Promise(resolve => setTimeout(resolve, 20))
    }
    expect(tasks).toHaveLength(1)
    expect(tasks[0]).toMatchObject({ type: 'api_image_import', status: 'success', input: { import_req: { method: { name: 'glance-direct' } } } })
    // The image is in this agent's site, the only store, and nothing is left to import or failed.
    expect((await api.call('GET', `/v2/images/${image.id}`)).json).toMatchObject({ stores: 'default', os_glance_importing_to_stores: '', os_glance_failed_import: '' })
    expect((await api.call('POST', `/v2/images/${image.id}/import`, { body: { method: { name: 'glance-direct' } } })).status).toBe(409)
  })
})

describe('actions, tags, delete', () => {
  it('deactivates and reactivates; only admins download a deactivated image', async () => {
    const { json: image } = await api.create({ visibility: 'public' })
    await api.upload(image.id, Buffer.from('abc'))
    expect((await api.call('POST', `/v2/images/${image.id}/actions/deactivate`)).status).toBe(204)
    expect((await api.call('POST', `/v2/images/${image.id}/actions/deactivate`)).status).toBe(204)
    expect((await api.download(image.id, asProject('other'))).status).toBe(403)
    expect((await api.download(image.id)).status).toBe(200)
    expect((await api.call('POST', `/v2/images/${image.id}/actions/reactivate`)).status).toBe(204)
    expect((await api.download(image.id, asProject('other'))).status).toBe(200)
    const { json: queued } = await api.create()
    expect((await api.call('POST', `/v2/images/${queued.id}/actions/deactivate`)).status).toBe(403)
  })

  it('adds and removes tags', async () => {
    const { json: image } = await api.create()
    expect((await api.call('PUT', `/v2/images/${image.id}/tags/blue`)).status).toBe(204)
    expect((await api.call('PUT', `/v2/images/${image.id}/tags/blue`)).status).toBe(204)
    expect((await api.call('GET', `/v2/images/${image.id}`)).json.tags).toEqual(['blue'])
    expect((await api.call('DELETE', `/v2/images/${image.id}/tags/blue`)).status).toBe(204)
    expect((await api.call('DELETE', `/v2/images/${image.id}/tags/blue`)).status).toBe(404)
    expect((await api.call('PUT', `/v2/images/${crypto.randomUUID()}/tags/blue`)).status).toBe(404)
  })

  it('refuses to delete a protected image, deletes it once unprotected, and frees its chunks', async () => {
    const before = await countChunks()
    const { json: image } = await api.create({ protected: true })
    await api.upload(image.id, randomBytes(300_000))
    expect(await countChunks()).toBeGreaterThan(before)
    const refused = await api.call('DELETE', `/v2/images/${image.id}`)
    expect(refused.status).toBe(403)
    expect(refused.json.message).toBe(`Image ${image.id} is protected and cannot be deleted.<br /><br />\n\n\n`)
    await api.patch(image.id, [{ op: 'replace', path: '/protected', value: false }])
    expect((await api.call('DELETE', `/v2/images/${image.id}`)).status).toBe(204)
    expect((await api.call('GET', `/v2/images/${image.id}`)).status).toBe(404)
    expect((await api.call('DELETE', `/v2/images/${image.id}`)).status).toBe(404)
    expect(await countChunks()).toBe(before)
  })

  it('keeps a chunk shared by two images until both are gone', async () => {
    const data = randomBytes(70_000)
    const a = (await api.create()).json.id
    const b = (await api.create()).json.id
    await api.upload(a, data)
    const withOne = await countChunks()
    await api.upload(b, data)
    expect(await countChunks()).toBe(withOne)
    await api.call('DELETE', `/v2/images/${a}`)
    expect((await api.download(b)).bytes.equals(data)).toBe(true)
  })
})

describe('visibility and members', () => {
  it('hides private images (404) and refuses others\' changes (403)', async () => {
    const { json: mine } = await api.create({ visibility: 'private' }, asProject('alice'))
    expect((await api.call('GET', `/v2/images/${mine.id}`, { headers: asProject('bob') })).status).toBe(404)
    expect((await api.call('GET', `/v2/images/${mine.id}`, { headers: asProject('alice') })).status).toBe(200)
    const { json: pub } = await api.create({ visibility: 'public' })
    expect((await api.patch(pub.id, [{ op: 'replace', path: '/name', value: 'x' }], '2.1', asProject('bob'))).status).toBe(403)
    expect((await api.call('DELETE', `/v2/images/${pub.id}`, { headers: asProject('bob') })).status).toBe(403)
    const reader = await api.upload(pub.id, Buffer.from('x'))
    expect(reader.status).toBe(204)
    expect((await api.download(pub.id, asProject('bob', 'reader'))).status).toBe(403)
  })

  it('shares an image with a project, which accepts it', async () => {
    const { json: image } = await api.create({ name: 'to-share' }, asProject('alice'))
    const bob = asProject('bob')
    expect((await api.call('GET', `/v2/images/${image.id}`, { headers: bob })).status).toBe(404)
    const added = await api.call('POST', `/v2/images/${image.id}/members`, { body: { member: 'bob' }, headers: asProject('alice') })
    expect(added.status).toBe(200)
    expect(added.json).toMatchObject({ member_id: 'bob', image_id: image.id, status: 'pending', schema: '/v2/schemas/member' })
    expect((await api.call('POST', `/v2/images/${image.id}/members`, { body: { member: 'bob' }, headers: asProject('alice') })).status).toBe(409)
    expect((await api.call('GET', `/v2/images/${image.id}`, { headers: bob })).status).toBe(200)
    const listed = async (): Promise<boolean> => (await api.call('GET', '/v2/images?limit=1000', { headers: bob })).json.images.some((i: any) => i.id === image.id)
    expect(await listed()).toBe(false)
    expect((await api.call('PUT', `/v2/images/${image.id}/members/bob`, { body: { status: 'accepted' }, headers: asProject('alice') })).status).toBe(403)
    expect((await api.call('PUT', `/v2/images/${image.id}/members/bob`, { body: { status: 'maybe' }, headers: bob })).status).toBe(400)
    expect((await api.call('PUT', `/v2/images/${image.id}/members/bob`, { body: { status: 'accepted' }, headers: bob })).json.status).toBe('accepted')
    expect(await listed()).toBe(true)
    expect((await api.call('GET', `/v2/images/${image.id}/members`, { headers: asProject('alice') })).json.members).toHaveLength(1)
    expect((await api.call('GET', `/v2/images/${image.id}/members/carol`, { headers: asProject('carol') })).status).toBe(404)
    expect((await api.call('DELETE', `/v2/images/${image.id}/members/bob`, { headers: bob })).status).toBe(403)
    expect((await api.call('DELETE', `/v2/images/${image.id}/members/bob`, { headers: asProject('alice') })).status).toBe(204)
    expect((await api.call('GET', `/v2/images/${image.id}`, { headers: bob })).status).toBe(404)
  })

  it('has members only for shared images', async () => {
    const { json: image } = await api.create({ visibility: 'private' })
    expect((await api.call('POST', `/v2/images/${image.id}/members`, { body: { member: 'x' } })).status).toBe(403)
    expect((await api.call('GET', `/v2/images/${image.id}/members`)).status).toBe(403)
  })
})

describe('HTTP conventions', () => {
  it('answers 405 with Allow for a known path and the wrong method', async () => {
    const r = await api.call('PUT', '/v2/images')
    expect(r.status).toBe(405)
    expect(r.headers.get('allow')).toBe('POST, GET')
    expect((await api.call('HEAD', '/v2/images')).status).toBe(405)
  })

  it('answers 404 for unknown v2 paths and refuses bodies on GET', async () => {
    expect((await api.call('GET', '/v2/nothing')).status).toBe(404)
    expect((await api.call('GET', '/v2/images/not-a-uuid')).status).toBe(404)
    expect((await api.call('DELETE', '/v2/images/not-a-uuid')).status).toBe(404)
    // fetch drops bodies on GET, so speak HTTP directly.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = request(`${agent.url}/v2/images`, { method: 'GET', headers: { 'content-type': 'application/json' } }, res => { res.resume(); resolve(res.statusCode) })
      req.on('error', reject)
      req.end('{}')
    })
    expect(status).toBe(400)
  })

  it('renders errors as WebOb does: HTML for */*, JSON when asked, text otherwise', async () => {
    const id = crypto.randomUUID()
    const html = await fetch(`${agent.url}/v2/images/${id}`, { headers: { accept: '*/*' } })
    expect(html.headers.get('content-type')).toBe('text/html; charset=UTF-8')
    expect(await html.text()).toContain(`<h1>404 Not Found</h1>\n  No image found with ID ${id}<br /><br />`)
    const plain = await fetch(`${agent.url}/v2/images/${id}`, { headers: { accept: '' } })
    expect(plain.headers.get('content-type')).toBe('text/plain; charset=UTF-8')
    expect(await plain.text()).toBe(`404 Not Found\n\nNo image found with ID ${id}\n\n   `)
    const json = await api.call('GET', `/v2/images/${id}`)
    expect(json.json).toEqual({ message: `No image found with ID ${id}<br /><br />\n\n\n`, code: '404 Not Found', title: 'Not Found' })
  })

  it('renders a 405 with WebOb\'s own templates, byte for byte as Glance 25 answered them', async () => {
    const as = async (method: string, path: string, accept: string): Promise<[number, string | null, string]> => {
      const res = await fetch(`${agent.url}${path}`, { method, headers: { accept } })
      return [res.status, res.headers.get('allow'), await res.text()]
    }
    const method = 'The method PUT is not allowed for this resource.'
    expect(await as('PUT', '/v2/tasks', 'application/json')).toEqual([405, 'GET, POST', JSON.stringify({ message: `${method} <br /><br />\n`, code: '405 Method Not Allowed', title: 'Method Not Allowed' })])
    expect(await as('PUT', '/v2/tasks', '*/*')).toEqual([405, 'GET, POST', `<html>\n <head>\n  <title>405 Method Not Allowed</title>\n </head>\n <body>\n  <h1>405 Method Not Allowed</h1>\n  ${method} <br /><br />\n\n </body>\n</html>`])
    expect(await as('PUT', '/v2/tasks', 'text/plain')).toEqual([405, 'GET, POST', `405 Method Not Allowed\n\n${method} \n\n `])
    const tasks = 'This operation is currently not permitted on Glance Tasks. They are auto deleted after reaching the time based on their expires_at property.'
    const task = `/v2/tasks/${crypto.randomUUID()}`
    expect(await as('DELETE', task, 'application/json')).toEqual([405, 'GET', JSON.stringify({ message: tasks, code: '405 Method Not Allowed', title: 'Method Not Allowed' })])
    expect(await as('DELETE', task, 'text/html')).toEqual([405, 'GET', `<html>\n <head>\n  <title>405 Method Not Allowed</title>\n </head>\n <body>\n  <h1>405 Method Not Allowed</h1>\n  ${tasks}\n </body>\n</html>`])
    expect(await as('DELETE', task, 'text/plain')).toEqual([405, 'GET', `405 Method Not Allowed\n\n${tasks}`])
  })

  it('serves the schemas clients build their models from', async () => {
    const image = (await api.call('GET', '/v2/schemas/image')).json
    expect(image.name).toBe('image')
    expect(image.properties.stores).toBeUndefined()
    expect(image.properties.disk_format.enum).toContain('qcow2')
    expect(image.additionalProperties).toEqual({ type: 'string' })
    for (const name of ['images', 'member', 'members', 'task', 'tasks', 'metadefs/namespace', 'metadefs/tags']) {
      expect((await api.call('GET', `/v2/schemas/${name}`)).json.name).toBe(name.replace('metadefs/', ''))
    }
    expect((await api.call('GET', '/v2/schemas/metadefs/resource_type')).json.name).toBe('resource_type_association')
    expect((await api.call('GET', '/v2/schemas/metadefs/resource_types')).json.name).toBe('resource_type_associations')
  })

  it('serves the info documents', async () => {
    expect((await api.call('GET', '/v2/info/import')).json['import-methods'].value).toEqual(['glance-direct'])
    // Stores are sites: a lone agent is in its site, `default` unless configured.
    const stores = await api.call('GET', '/v2/info/stores')
    expect(stores.status).toBe(200)
    expect(stores.json).toEqual({ stores: [{ id: 'default', description: 'peerglance site default (this agent\'s)', default: 'true' }] })
    expect((await api.call('GET', '/v2/info/usage')).json.usage.image_count_total.usage).toBeGreaterThan(0)
  })
})

async function countChunks (target: TestAgent = agent): Promise<number> {
  let n = 0
  for await (const _ of target.agent.chunks.listCids()) n++
  return n
}
