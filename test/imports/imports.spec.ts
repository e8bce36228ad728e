import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, meshOf, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { glanceCli, idsIn, tableValue } from '../clients/cli.ts'
import { chunkFiles, download, glance, md5, sha512 } from '../mesh/helpers.ts'
import type { Glance, Image } from '../mesh/helpers.ts'

/**
 * Import methods and stores-as-sites with real agents: two in site `east`, one in `west`, a web
 * server the test runs on 127.0.0.1 (the only network web-download may reach) and a second one on
 * 127.0.0.2 that must never be asked anything, driven by the real `glance` client.
 */

const IMAGE = randomBytes(9 * 1024 * 1024 + 17)
let mesh: TestMesh
let home: string
let web: Server
let forbidden: Server
let webPort: number
let forbiddenPort: number
const forbiddenHits: string[] = []
let east: Glance
let east2: Glance
let west: Glance

function serve (handler: (req: IncomingMessage, res: ServerResponse) => void, host: string, port: number): Promise<Server> {
  const server = createServer(handler)
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { resolve(server) })
  })
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'peerglance-imports-'))
  webPort = await freePort()
  forbiddenPort = await freePort()
  web = await serve((req, res) => {
    const redirect = (to: string): void => { res.writeHead(302, { location: to }).end() }
    switch (req.url) {
      case '/image.raw': res.writeHead(200, { 'content-length': String(IMAGE.length) }).end(IMAGE); return
      case '/hop': redirect('/image.raw'); return
      case '/to-other-loopback': redirect(`http://127.0.0.2:${forbiddenPort}/image.raw`); return
      case '/to-metadata': redirect('http://169.254.169.254/latest/meta-data/'); return
      // A port the filters do not list (web and forbidden ports are allowed).
      case '/to-other-port': redirect(`http://127.0.0.1:${webPort + 1 === forbiddenPort ? webPort + 2 : webPort + 1}/image.raw`); return
      default: res.writeHead(404).end()
    }
  }, '127.0.0.1', webPort)
  forbidden = await serve((req, res) => {
    forbiddenHits.push(req.url ?? '')
    res.writeHead(200, { 'content-length': String(IMAGE.length) }).end(IMAGE)
  }, '127.0.0.2', forbiddenPort)
  const config = async (site: string): Promise<string> => {
    const file = join(home, `${site}.yaml`)
    await writeFile(file, JSON.stringify({
      agent: { site },
      glance: { enabledImportMethods: ['glance-direct', 'web-download', 'copy-image'] },
      import: { siteTimeoutMs: 60_000, webDownload: { allowedPorts: [webPort, forbiddenPort], allowedNetworks: ['127.0.0.1/32'] } }
    }))
    return file
  }
  const sites = ['east', 'east', 'west']
  const files = { east: await config('east'), west: await config('west') }
  mesh = await meshOf(3, { argsOf: i => ['--config', files[sites[i] as 'east' | 'west']] })
  ;[east, east2, west] = mesh.agents.map(a => glance(a.url))
})

afterAll(async () => {
  await mesh?.close()
  await new Promise(resolve => web?.close(resolve))
  await new Promise(resolve => forbidden?.close(resolve))
  await rm(home, { recursive: true, force: true })
})

async function settled (api: Glance, id: string, timeoutMs = 60_000): Promise<Image> {
  return await waitFor(async () => {
    const image = await api.image(id)
    return image.os_glance_importing_to_stores === '' && image.os_glance_import_task == null ? image : undefined
  }, { timeoutMs, what: `image ${id} placed on every site asked` })
}

async function tasksOf (api: Glance, id: string): Promise<Array<Record<string, any>>> {
  return (await api.request('GET', `/v2/images/${id}/tasks`)).body.tasks
}

describe('stores are sites', () => {
  it('GET /v2/info/stores and `glance stores-info` list every site the agents announce', async () => {
    const docs = await waitFor(async () => {
      const bodies = await Promise.all([east, east2, west].map(async api => (await api.request('GET', '/v2/info/stores')).body))
      return bodies.every(b => b.stores.length === 2) ? bodies : undefined
    }, { what: 'both sites announced to every agent', timeoutMs: 40_000 })
    const doc = docs[0]
    expect(doc).toEqual({
      stores: [
        { id: 'east', description: 'peerglance site east (this agent\'s)', default: 'true' },
        { id: 'west', description: 'peerglance site west' }
      ]
    })
    const out = await glanceCli(mesh.agents[2].url, join(home, 'g1')).ok(['stores-info'])
    expect(out).toContain('"id": "east"')
    expect(out).toContain('"id": "west"')
    expect(out).toContain('"default":')
  })
})

describe('web-download', () => {
  it('imports from a URL (after a redirect) into both sites; the other site gets the bytes through the mesh', async () => {
    const g = glanceCli(mesh.agents[0].url, join(home, 'g2'))
    const out = await g.ok([
      'image-create-via-import', '--name', 'from-the-web', '--disk-format', 'raw', '--container-format', 'bare',
      // `--all-stores`: glanceclient 4.1's `--stores` here pops `stores` from the fields its cached
      // image schema gave it, and dies when the schema has none (a schema with one breaks every call).
      '--import-method', 'web-download', '--uri', `http://127.0.0.1:${webPort}/hop`, '--all-stores', 'True'
    ])
    const id = idsIn(out)[0]
    const image = await settled(east, id)
    expect(image).toMatchObject({ status: 'active', size: IMAGE.length, checksum: md5(IMAGE), os_hash_value: sha512(IMAGE), stores: 'east,west', os_glance_failed_import: '' })
    // Each site's copy: the west agent holds every chunk itself and serves the exact bytes.
    const fromWest = await download(mesh.agents[2].url, `/v2/images/${id}/file`)
    expect(fromWest).toMatchObject({ status: 200, bytes: IMAGE.length, sha512: sha512(IMAGE) })
    expect((await west.image(id)).stores).toBe('east,west')
    // The task ran on the east agent; its record reached the west one.
    const [task] = await waitFor(async () => { const t = await tasksOf(west, id); return t[0]?.status === 'success' ? t : undefined }, { what: 'the task replicated' })
    expect(task).toMatchObject({ type: 'api_image_import', status: 'success', input: { import_req: { method: { name: 'web-download' } }, backend: ['east', 'west'] } })
    // The glance client still works on its next calls (it cached the image schema on the first).
    const shown = await g.ok(['image-show', id])
    expect(tableValue(shown, 'stores')).toBe('east,west')
  })

  it('refuses a URI outside the filters at once, with 400, and changes nothing', async () => {
    const image = await east.create({ name: 'refused' })
    for (const uri of [`ftp://127.0.0.1:${webPort}/image.raw`, `http://127.0.0.1:1/image.raw`, 'http://user:pw@127.0.0.1/']) {
      const r = await east.request('POST', `/v2/images/${image.id}/import`, { method: { name: 'web-download', uri } })
      expect(r.status, uri).toBe(400)
      expect(r.body.message ?? JSON.stringify(r.body)).toContain('does not pass filtering')
    }
    expect((await east.image(image.id)).status).toBe('queued')
    expect(await tasksOf(east, image.id)).toEqual([])
  })

  it('never follows a redirect to an address or port it may not reach: the task fails, the image is queued, nothing is stored', async () => {
    const before = (await chunkFiles(mesh.agents[0].dataDir)).length
    for (const path of ['/to-other-loopback', '/to-metadata', `/to-other-port`]) {
      const image = await east.create({ name: `ssrf${path}` })
      const r = await east.request('POST', `/v2/images/${image.id}/import`, { method: { name: 'web-download', uri: `http://127.0.0.1:${webPort}${path}` } })
      expect(r.status).toBe(202)
      const [task] = await waitFor(async () => {
        const tasks = await tasksOf(east, image.id)
        return tasks[0]?.status === 'failure' ? tasks : undefined
      }, { what: `the ${path} import failing` })
      expect(task.message).toMatch(/no allowed addresses|not allowed/)
      const after = await east.image(image.id)
      // Back to queued, holding nothing anywhere; the site it was meant for is listed as failed (as Glance lists its store).
      expect(after).toMatchObject({ status: 'queued', size: null, checksum: null, stores: '', os_glance_importing_to_stores: '', os_glance_failed_import: 'east' })
      expect(after.os_glance_import_task).toBeUndefined()
    }
    // The other loopback address spelled as IPv6: IPv4-mapped (the URL parser's way or not), NAT64.
    for (const host of ['[::ffff:127.0.0.2]', '[::ffff:7f00:2]', '[64:ff9b::7f00:2]']) {
      const image = await east.create({ name: `ssrf ${host}` })
      const r = await east.request('POST', `/v2/images/${image.id}/import`, { method: { name: 'web-download', uri: `http://${host}:${forbiddenPort}/image.raw` } })
      expect(r.status).toBe(202)
      const [task] = await waitFor(async () => {
        const tasks = await tasksOf(east, image.id)
        return tasks[0]?.status === 'failure' ? tasks : undefined
      }, { what: `the ${host} import failing` })
      expect(task.message).toMatch(/no allowed addresses/)
    }
    expect(forbiddenHits).toEqual([])
    expect((await chunkFiles(mesh.agents[0].dataDir)).length).toBe(before)
  })
})

describe('copy-image and DELETE /v2/stores', () => {
  it('copies an image uploaded in one site to the other, then drops that site\'s copy', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 5)
    const image = await west.create({ name: 'copied' })
    await west.upload(image.id, data)
    expect((await west.image(image.id)).stores).toBe('west')
    const g = glanceCli(mesh.agents[2].url, join(home, 'g3'))
    await g.ok(['image-import', '--import-method', 'copy-image', '--stores', 'east', image.id])
    const copied = await settled(west, image.id)
    expect(copied).toMatchObject({ stores: 'east,west', os_glance_failed_import: '' })
    // Both east agents fetch it through the mesh (the site is `active` once the first has it) and keep it.
    for (const agent of mesh.agents.slice(0, 2)) {
      await waitFor(async () => {
        const status = await (await fetch(new URL('/peerglance/v1/status', agent.url))).json() as { images: Array<{ id: string, localShare: number | null }> }
        return status.images.find(i => i.id === image.id)?.localShare === 1
      }, { what: `the image whole on ${agent.url}`, timeoutMs: 30_000 })
    }
    // Copying again to a site that has it is a 400, as in Glance; to an unknown site a 409.
    expect((await west.request('POST', `/v2/images/${image.id}/import`, { method: { name: 'copy-image' }, stores: ['east'] })).status).toBe(400)
    expect((await west.request('POST', `/v2/images/${image.id}/import`, { method: { name: 'copy-image' }, stores: ['mars'] })).status).toBe(409)

    await g.ok(['stores-delete', '--store', 'west', image.id])
    expect((await west.image(image.id)).stores).toBe('east')
    // The last site's copy is refused (403), an image not in a site is a 404.
    expect((await west.request('DELETE', `/v2/stores/east/${image.id}`)).status).toBe(403)
    expect((await west.request('DELETE', `/v2/stores/west/${image.id}`)).status).toBe(404)
    expect((await east2.image(image.id)).stores).toBe('east')
  })
})

describe('tasks API', () => {
  it('glance task-list and task-show show the import tasks of every agent, to admins only', async () => {
    const g = glanceCli(mesh.agents[1].url, join(home, 'g4'))
    // The second east agent ran no import: it lists the others'.
    const all = await east2.request('GET', '/v2/tasks?limit=100')
    expect(all.status).toBe(200)
    const ids: string[] = all.body.tasks.map((t: { id: string }) => t.id)
    expect(ids.length).toBeGreaterThan(0)
    const listed = await g.ok(['task-list'])
    expect(idsIn(listed)).toEqual(expect.arrayContaining(ids.slice(0, 20)))
    const shown = await g.ok(['task-show', ids[0]])
    expect(tableValue(shown, 'type')).toBe('api_image_import')
    const member = await east2.call('/v2/tasks', { headers: { 'x-project-id': 'p1', 'x-roles': 'member' } })
    expect(member.status).toBe(403)
    expect((await east2.request('DELETE', `/v2/tasks/${ids[0]}`)).status).toBe(405)
  })
})

describe('the tasks API\'s import task (POST /v2/tasks, glance task-create)', () => {
  const uri = (path: string): string => `http://127.0.0.1:${webPort}${path}`
  const input = (importFrom: unknown, properties: Record<string, unknown> = {}): Record<string, unknown> =>
    ({ import_from: importFrom, import_from_format: 'raw', image_properties: { name: 'from-a-task', disk_format: 'raw', container_format: 'bare', ...properties } })

  it('creates the image (no owner, as Glance 25), fetches import_from into it and succeeds with its id; other agents list the task', async () => {
    const g = glanceCli(mesh.agents[0].url, join(home, 'g5'))
    const created = await g.ok(['task-create', '--type', 'import', '--input', JSON.stringify(input(uri('/hop'), { os_distro: 'cirros' }))])
    const id = idsIn(created)[0]
    expect(tableValue(created, 'status')).toBe('pending')
    const done = await waitFor(async () => {
      const t = await east.request('GET', `/v2/tasks/${id}`)
      return t.body.status === 'success' || t.body.status === 'failure' ? t.body : undefined
    }, { timeoutMs: 60_000 })
    expect(done).toMatchObject({ id, type: 'import', status: 'success', message: '', input: input(uri('/hop'), { os_distro: 'cirros' }), self: `/v2/tasks/${id}`, schema: '/v2/schemas/task' })
    expect(done.image_id).toBeUndefined()
    const image = await east.image(done.result.image_id)
    expect(image).toMatchObject({ name: 'from-a-task', status: 'active', os_distro: 'cirros', size: IMAGE.length, checksum: md5(IMAGE), os_hash_value: sha512(IMAGE), stores: 'east' })
    // As Glance 25's task executor creates it: no owner (every project finds it).
    expect(image.owner).toBeNull()
    const got = await download(mesh.agents[2].url, `/v2/images/${image.id}/file`)
    expect([got.status, got.sha512]).toEqual([200, sha512(IMAGE)])
    // Replicated: the west agent lists it, as Glance lists tasks without input, result or message.
    const listed = await waitFor(async () => (await west.request('GET', '/v2/tasks?type=import&limit=100')).body.tasks.find((t: { id: string }) => t.id === id), { timeoutMs: 30_000 })
    expect(Object.keys(listed)).toEqual(['id', 'type', 'status', 'owner', 'created_at', 'updated_at', 'self', 'schema', 'expires_at'])
  })

  it('refuses what Glance 25 refuses, with its statuses and messages, and stores nothing', async () => {
    const before = (await east.list()).length
    const tasksBefore = (await east.request('GET', '/v2/tasks?limit=1000')).body.tasks.length
    const refused = async (body: unknown, headers: Record<string, string> = {}): Promise<[number, string]> => {
      const res = await east.call('/v2/tasks', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', ...headers }, body: body === undefined ? undefined : JSON.stringify(body) })
      return [res.status, (await res.json() as { message: string }).message.replace(/<br \/><br \/>\n\n\n$/, '')]
    }
    expect(await refused({ type: 'import', input: {} }, { 'x-project-id': 'p1', 'x-roles': 'member' })).toEqual([403, 'You are not authorized to complete tasks_api_access action.'])
    expect(await refused(undefined)).toEqual([400, 'Body expected in request.'])
    expect(await refused({})).toEqual([400, 'Task \'type\' is required'])
    expect(await refused({ type: 'import' })).toEqual([400, 'Task \'input\' is required'])
    expect(await refused({ type: 'foo', input: {} })).toEqual([400, 'Provided object does not match schema \'task\': \'foo\' is not one of [\'import\', \'api_image_import\']'])
    expect(await refused({ type: 'import', input: 'x' })).toEqual([400, 'Provided object does not match schema \'task\': \'x\' is not of type \'null\', \'object\''])
    expect(await refused({ type: 'import', input: {} })).toEqual([400, 'Invalid location: None'])
    expect(await refused({ type: 'import', input: { import_from: 'file:///etc/passwd' } })).toEqual([400, 'File based imports are not allowed. Please use a non-local source of image data.'])
    expect(await refused({ type: 'import', input: { import_from: 'ftp://example.com/x' } })).toEqual([400, 'The given uri is not valid. Please specify a valid uri from the following list of supported uri [\'http\']'])
    expect(await refused({ type: 'import', input: { import_from: 'http://127.0.0.1/image.raw' } })).toEqual([400, 'URI for legacy import task does not pass filtering: http://127.0.0.1/image.raw'])
    // Larger than any agent keeps on merge: refused here rather than kept by this agent alone.
    expect(await refused({ type: 'import', input: input(uri('/hop'), { description: 'x'.repeat(70_000) }) })).toEqual([400, 'Invalid task: task input is not an object of at most 64 KiB.'])
    expect((await east.request('DELETE', '/v2/tasks/00000000-0000-0000-0000-000000000000')).status).toBe(405)
    expect((await east.list()).length).toBe(before)
    expect((await east.request('GET', '/v2/tasks?limit=1000')).body.tasks.length).toBe(tasksBefore)
    // The list's and show's refusals, as Glance 25 words them.
    const listed = async (path: string): Promise<[number, string]> => {
      const res = await east.call(path, { headers: { accept: 'application/json' } })
      return [res.status, (await res.json() as { message: string }).message.replace(/<br \/><br \/>\n\n\n$/, '')]
    }
    expect(await listed('/v2/tasks?type=api_image_import')).toEqual([400, 'Invalid type value: api_image_import'])
    expect(await listed('/v2/tasks?sort_key=bogus')).toEqual([400, 'Sort key supplied was not valid.'])
    expect(await listed('/v2/tasks?limit=x')).toEqual([400, 'limit param must be an integer'])
    expect(await listed('/v2/tasks?limit=-1')).toEqual([400, 'limit param must be positive'])
    expect(await listed('/v2/tasks?sort_dir=up')).toEqual([400, 'Invalid sort direction: up'])
    expect(await listed('/v2/tasks?status=bogus')).toEqual([400, 'Invalid status value: bogus'])
    expect(await listed('/v2/tasks?marker=xyz')).toEqual([400, 'Invalid marker format'])
    expect(await listed('/v2/tasks?marker=00000000-0000-0000-0000-000000000000')).toEqual([400, 'Task with the given id 00000000-0000-0000-0000-000000000000 was not found'])
    expect(await listed('/v2/tasks/not-a-uuid')).toEqual([404, 'Could not find task not-a-uuid'])
  })

  it('never fetches from an address web-download may not reach, directly or by a redirect: the task fails and its image is gone', async () => {
    const before = (await chunkFiles(mesh.agents[0].dataDir)).length
    for (const from of [uri('/to-metadata'), uri('/to-other-loopback'), uri('/to-other-port'), `http://169.254.169.254:${webPort}/latest/meta-data/`, `http://[::ffff:127.0.0.2]:${forbiddenPort}/image.raw`]) {
      const { status, body } = await east.request('POST', '/v2/tasks', { type: 'import', input: input(from, { name: 'ssrf-task' }) })
      expect(status, from).toBe(201)
      const done = await waitFor(async () => {
        const t = await east.request('GET', `/v2/tasks/${body.id as string}`)
        return t.body.status === 'failure' || t.body.status === 'success' ? t.body : undefined
      }, { timeoutMs: 60_000, what: `the task from ${from} ending` })
      expect(done, from).toMatchObject({ status: 'failure', result: null })
      expect(done.message).toMatch(/no allowed addresses|not allowed/)
    }
    expect(forbiddenHits).toEqual([])
    expect((await east.list()).some(i => i.name === 'ssrf-task')).toBe(false)
    expect((await chunkFiles(mesh.agents[0].dataDir)).length).toBe(before)
  })

  it('fails a task whose URI cannot be fetched and deletes the image it created', async () => {
    const { status, body } = await east.request('POST', '/v2/tasks', { type: 'import', input: input(uri('/missing')) })
    expect(status).toBe(201)
    const done = await waitFor(async () => {
      const t = await east.request('GET', `/v2/tasks/${body.id as string}`)
      return t.body.status === 'failure' || t.body.status === 'success' ? t.body : undefined
    }, { timeoutMs: 60_000 })
    expect(done).toMatchObject({ status: 'failure', result: null })
    expect(done.message).not.toBe('')
    expect((await east.list()).some(i => i.name === 'from-a-task' && i.status !== 'active')).toBe(false)
  })
})

describe('conversion on import (import.conversionFormat)', () => {
  it('converts a qcow2 to raw with qemu-img and inspects the result; a qcow2 with a backing file is refused before qemu-img reads it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'peerglance-convert-'))
    const qemu = async (...args: string[]): Promise<void> => {
      await new Promise<void>((resolve, reject) => { execFile('qemu-img', args, err => { err == null ? resolve() : reject(err) }) })
    }
    // A qcow2 with data in it: qemu-img convert from a raw file of random bytes.
    const raw = randomBytes(2 * 1024 * 1024)
    await writeFile(join(dir, 'disk.raw'), raw)
    await qemu('convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'disk.raw'), join(dir, 'disk.qcow2'))
    await qemu('create', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', join(dir, 'backed.qcow2'))
    const files = new Map([['/disk.qcow2', await readFile(join(dir, 'disk.qcow2'))], ['/backed.qcow2', await readFile(join(dir, 'backed.qcow2'))]])
    const port = await freePort()
    const server = await serve((req, res) => {
      const body = files.get(req.url ?? '')
      if (body == null) { res.writeHead(404).end(); return }
      res.writeHead(200, { 'content-length': String(body.length) }).end(body)
    }, '127.0.0.1', port)
    const file = join(dir, 'agent.yaml')
    await writeFile(file, JSON.stringify({
      glance: { enabledImportMethods: ['glance-direct', 'web-download'] },
      import: { conversionFormat: 'raw', webDownload: { allowedPorts: [port], allowedNetworks: ['127.0.0.1/32'] } }
    }))
    const single = await meshOf(1, { args: ['--config', file] })
    try {
      const api = glance(single.agents[0].url)
      const image = await api.create({ name: 'converted', disk_format: 'qcow2' })
      expect((await api.request('POST', `/v2/images/${image.id}/import`, { method: { name: 'web-download', uri: `http://127.0.0.1:${port}/disk.qcow2` } })).status).toBe(202)
      const done = await waitFor(async () => { const i = await api.image(image.id); return i.status === 'active' ? i : undefined }, { what: 'the converted image active', timeoutMs: 30_000 })
      expect(done).toMatchObject({ disk_format: 'raw', size: raw.length, virtual_size: raw.length, os_hash_value: sha512(raw), checksum: md5(raw) })
      expect((await download(single.agents[0].url, `/v2/images/${image.id}/file`)).sha512).toBe(sha512(raw))

      // glance-direct goes through the same conversion.
      const staged = await api.create({ name: 'staged', disk_format: 'qcow2' })
      expect((await api.call(`/v2/images/${staged.id}/stage`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: files.get('/disk.qcow2') })).status).toBe(204)
      expect((await api.request('POST', `/v2/images/${staged.id}/import`, { method: { name: 'glance-direct' } })).status).toBe(202)
      const direct = await waitFor(async () => { const i = await api.image(staged.id); return i.status === 'active' ? i : undefined }, { what: 'the staged image converted', timeoutMs: 30_000 })
      expect(direct).toMatchObject({ disk_format: 'raw', size: raw.length, os_hash_value: sha512(raw) })

      const before = new Set((await chunkFiles(single.agents[0].dataDir)).map(([cid]) => cid))
      const backed = await api.create({ name: 'backed', disk_format: 'qcow2' })
      expect((await api.request('POST', `/v2/images/${backed.id}/import`, { method: { name: 'web-download', uri: `http://127.0.0.1:${port}/backed.qcow2` } })).status).toBe(202)
      const [task] = await waitFor(async () => { const t = await tasksOf(api, backed.id); return t[0]?.status === 'failure' ? t : undefined }, { what: 'the backed import failing' })
      expect(task.message).toMatch(/safety|backing/i)
      expect(await api.image(backed.id)).toMatchObject({ status: 'queued', disk_format: 'qcow2', size: null, stores: '', os_glance_failed_import: 'default' })
      // Nothing new on disk (the staged qcow2's chunks may still be on their way out).
      expect((await chunkFiles(single.agents[0].dataDir)).filter(([cid]) => !before.has(cid))).toEqual([])
    } finally {
      await single.close()
      await new Promise(resolve => server.close(resolve))
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('an import cut by a crash', () => {
  it('ends as failed when the agent comes back: image queued, lock gone, the site listed as failed, nothing kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'peerglance-import-crash-'))
    const port = await freePort()
    let asked = 0
    // Sends the head of a big image, then nothing: the import is still running when the agent dies.
    const server = await serve((_req, res) => {
      asked++
      res.writeHead(200, { 'content-length': String(64 * 1024 * 1024) })
      res.write(randomBytes(5 * 1024 * 1024))
    }, '127.0.0.1', port)
    const file = join(dir, 'agent.yaml')
    await writeFile(file, JSON.stringify({
      glance: { enabledImportMethods: ['web-download'] },
      import: { webDownload: { allowedPorts: [port], allowedNetworks: ['127.0.0.1/32'] } }
    }))
    const single = await meshOf(1, { args: ['--config', file] })
    try {
      const first = single.agents[0]
      let api = glance(first.url)
      const image = await api.create({ name: 'cut' })
      expect((await api.request('POST', `/v2/images/${image.id}/import`, { method: { name: 'web-download', uri: `http://127.0.0.1:${port}/big.raw` } })).status).toBe(202)
      await waitFor(async () => asked > 0 && (await api.image(image.id)).status === 'importing', { what: 'the import running' })
      await first.kill('SIGKILL')
      const again = await single.add({ dataDir: first.dataDir, args: ['--config', file], bootstrap: false })
      api = glance(again.url)
      const after = await api.image(image.id)
      expect(after).toMatchObject({ status: 'queued', size: null, stores: '', os_glance_importing_to_stores: '', os_glance_failed_import: 'default' })
      expect(after.os_glance_import_task).toBeUndefined()
      const [task] = await tasksOf(api, image.id)
      expect(task).toMatchObject({ status: 'failure', message: 'The agent running this import stopped before it finished.' })
      expect(await chunkFiles(again.dataDir)).toEqual([])
      // And the image can be imported again.
      expect((await api.request('POST', `/v2/images/${image.id}/import`, { method: { name: 'web-download', uri: `http://127.0.0.1:${port}/big.raw` } })).status).toBe(202)
    } finally {
      await single.close()
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
      await rm(dir, { recursive: true, force: true })
    }
  })
})
