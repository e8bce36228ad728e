import { execFile } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { md5File, randomFile, sha512File, spawnAgent, tmpDir } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'
import { asProject, glanceApi, listRequests, openstackCli } from './cli.ts'
import type { Cli } from './cli.ts'

const MIB = 1024 * 1024

// A Keystone project id is 32 hex digits; OSC only skips its identity lookup for uuid-like ids.
function projectId (): string {
  return randomUUID().replaceAll('-', '')
}

interface Row { ID: string, Name: string, Status: string }

describe('openstack CLI (python3-openstackclient 6.0) against a spawned agent', () => {
  let dir: string
  let agent: SpawnedAgent
  let os: Cli
  let api: ReturnType<typeof glanceApi>
  let qcow2: string
  // A per-run word in names and tags, so filters only ever match what this file created.
  const run = randomBytes(4).toString('hex')

  beforeAll(async () => {
    dir = await tmpDir('peerglance-osc-')
    await mkdir(join(dir, 'home'))
    agent = await spawnAgent({ dataDir: join(dir, 'data') })
    os = openstackCli(agent.url, join(dir, 'home'))
    api = glanceApi(agent.url)
    qcow2 = join(dir, 'x.qcow2')
    await promisify(execFile)('qemu-img', ['create', '-f', 'qcow2', qcow2, '64M'], { timeout: 30_000 })
  })

  afterAll(async () => {
    const code = await agent?.kill('SIGTERM')
    if (dir != null) await rm(dir, { recursive: true, force: true })
    // 0 means the agent drained and closed its stores instead of dying.
    expect(code).toBe(0)
  })

  async function list (...args: string[]): Promise<Row[]> {
    return JSON.parse(await os.ok(['image', 'list', '-f', 'json', ...args])) as Row[]
  }

  /** An active image with a few random bytes, made through the API (faster than the CLI). */
  async function smallImage (body: Record<string, unknown> = {}): Promise<{ id: string, data: Uint8Array }> {
    const image = await api.create({ name: `small-${run}-${randomUUID()}`, disk_format: 'raw', container_format: 'bare', ...body })
    const data = randomBytes(4096)
    await api.upload(image.id, data)
    return { id: image.id, data }
  }

  it('image create --file uploads a qcow2 and the API reports its size, virtual size and hashes', async () => {
    const created = JSON.parse(await os.ok(['image', 'create', '--file', qcow2, '--disk-format', 'qcow2', '--container-format', 'bare', `qcow2-${run}`, '-f', 'json'])) as { id: string }

    // OSC 6.0 prints the record from before the upload (status queued), so ask the API.
    const image = await api.image(created.id)
    expect(image).toMatchObject({
      name: `qcow2-${run}`,
      status: 'active',
      disk_format: 'qcow2',
      container_format: 'bare',
      size: (await stat(qcow2)).size,
      virtual_size: 64 * MIB,
      checksum: await md5File(qcow2),
      os_hash_algo: 'sha512',
      os_hash_value: await sha512File(qcow2)
    })

    const shown = JSON.parse(await os.ok(['image', 'show', created.id, '-f', 'json'])) as Record<string, unknown>
    expect(shown).toMatchObject({ id: created.id, status: 'active', disk_format: 'qcow2', size: image.size, virtual_size: 64 * MIB })
  })

  it('a 200 MiB raw image goes up with image create --file and comes back byte-exact with image save', async () => {
    const file = join(dir, 'big.raw')
    await randomFile(file, 200 * MIB)
    const sha512 = await sha512File(file)
    const created = JSON.parse(await os.ok(['image', 'create', '--file', file, '--disk-format', 'raw', `big-${run}`, '-f', 'json'])) as { id: string }

    const image = await api.image(created.id)
    expect(image).toMatchObject({
      status: 'active', disk_format: 'raw', container_format: 'bare', size: 200 * MIB, virtual_size: 200 * MIB,
      checksum: await md5File(file), os_hash_algo: 'sha512', os_hash_value: sha512
    })

    // The SDK checks the download against os_hash_value itself and fails the command on a mismatch.
    const saved = join(dir, 'big.saved')
    await os.ok(['image', 'save', '--file', saved, created.id])
    expect((await stat(saved)).size).toBe(200 * MIB)
    expect(await sha512File(saved)).toBe(sha512)
    await rm(file)
    await rm(saved)
  })

  it('image create --import stages the file and the image ends active with its hashes', async () => {
    const file = join(dir, 'import.raw')
    await randomFile(file, 3 * MIB + 17)
    const created = JSON.parse(await os.ok(['image', 'create', '--import', '--file', file, '--disk-format', 'raw', `import-${run}`, '-f', 'json'])) as { id: string }

    const image = await api.waitForStatus(created.id, 'active')
    expect(image).toMatchObject({ size: 3 * MIB + 17, checksum: await md5File(file), os_hash_value: await sha512File(file) })
    const saved = join(dir, 'import.saved')
    await os.ok(['image', 'save', '--file', saved, created.id])
    expect(await sha512File(saved)).toBe(await sha512File(file))
  })

  it('image list filters by name, status, tag and visibility, and image show finds an image by name', async () => {
    const tag = `tag-${run}`
    const pub = await api.create({ name: `pub-${run}`, visibility: 'public', disk_format: 'raw', container_format: 'bare', tags: [tag] })
    const priv = await api.create({ name: `priv-${run}`, visibility: 'private', disk_format: 'raw', container_format: 'bare' })
    const shared = await smallImage({ name: `shared-${run}`, visibility: 'shared', tags: [tag] })

    expect((await list('--name', `priv-${run}`)).map(r => r.ID)).toEqual([priv.id])
    expect((await list('--tag', tag)).map(r => r.ID).sort()).toEqual([pub.id, shared.id].sort())

    const queued = await list('--status', 'queued')
    expect(queued.map(r => r.ID)).toEqual(expect.arrayContaining([pub.id, priv.id]))
    expect(queued.map(r => r.ID)).not.toContain(shared.id)
    expect(new Set(queued.map(r => r.Status))).toEqual(new Set(['queued']))

    const byVisibility = {
      public: (await list('--public')).map(r => r.ID),
      private: (await list('--private')).map(r => r.ID),
      shared: (await list('--shared')).map(r => r.ID)
    }
    expect(byVisibility).toEqual({
      public: expect.arrayContaining([pub.id]),
      private: expect.arrayContaining([priv.id]),
      shared: expect.arrayContaining([shared.id])
    })
    expect([...byVisibility.private, ...byVisibility.shared]).not.toContain(pub.id)
    expect([...byVisibility.public, ...byVisibility.shared]).not.toContain(priv.id)
    expect([...byVisibility.public, ...byVisibility.private]).not.toContain(shared.id)

    // --hidden sends os_hidden=True (capitalised), which Glance accepts.
    const hidden = await api.create({ name: `hidden-${run}`, os_hidden: true })
    expect((await list('--hidden')).map(r => r.ID)).toContain(hidden.id)
    expect((await list()).map(r => r.ID)).not.toContain(hidden.id)

    // OSC resolves a name with GET /v2/images/{name} (404), then GET /v2/images?name=.
    const shown = JSON.parse(await os.ok(['image', 'show', `priv-${run}`, '-f', 'json'])) as Record<string, unknown>
    expect(shown).toMatchObject({ id: priv.id, visibility: 'private', status: 'queued' })
  })

  it('image set and image unset change the name, min ram, min disk and properties', async () => {
    const { id } = await smallImage()
    await os.ok(['image', 'set', '--name', `renamed-${run}`, '--min-ram', '512', '--min-disk', '3', '--property', 'os_distro=debian', '--property', 'hw_firmware_type=uefi', id])
    expect(await api.image(id)).toMatchObject({ name: `renamed-${run}`, min_ram: 512, min_disk: 3, os_distro: 'debian', hw_firmware_type: 'uefi' })

    await os.ok(['image', 'set', '--property', 'os_distro=ubuntu', id])
    await os.ok(['image', 'unset', '--property', 'hw_firmware_type', id])
    const image = await api.image(id)
    expect(image.os_distro).toBe('ubuntu')
    expect(image).not.toHaveProperty('hw_firmware_type')
    expect(image).toMatchObject({ name: `renamed-${run}`, min_ram: 512, min_disk: 3, status: 'active' })
  })

  it('image set --tag adds tags and image unset --tag removes one', async () => {
    const { id } = await smallImage()
    await os.ok(['image', 'set', '--tag', 'alpha', '--tag', 'beta', id])
    expect((await api.image(id)).tags.sort()).toEqual(['alpha', 'beta'])
    await os.ok(['image', 'set', '--tag', 'gamma', id])
    expect((await api.image(id)).tags.sort()).toEqual(['alpha', 'beta', 'gamma'])
    await os.ok(['image', 'unset', '--tag', 'beta', id])
    expect((await api.image(id)).tags.sort()).toEqual(['alpha', 'gamma'])
  })

  it('image set --deactivate stops non-admin downloads until image set --activate', async () => {
    const { id, data } = await smallImage()
    const member = asProject('admin', 'member')

    await os.ok(['image', 'set', '--deactivate', id])
    expect((await api.image(id)).status).toBe('deactivated')
    expect((await api.fetch(`/v2/images/${id}/file`, { headers: member })).status).toBe(403)
    // Glance still lets an admin read a deactivated image (image_data.py download).
    const adminRead = await api.fetch(`/v2/images/${id}/file`)
    expect(adminRead.status).toBe(200)
    expect(new Uint8Array(await adminRead.arrayBuffer())).toEqual(new Uint8Array(data))

    await os.ok(['image', 'set', '--activate', id])
    expect((await api.image(id)).status).toBe('active')
    const memberRead = await api.fetch(`/v2/images/${id}/file`, { headers: member })
    expect(memberRead.status).toBe(200)
    expect(new Uint8Array(await memberRead.arrayBuffer())).toEqual(new Uint8Array(data))
  })

  it('image add project shares an image the member sees, accepts and downloads; image remove project ends it', async () => {
    const { id, data } = await smallImage({ visibility: 'shared' })
    const project = projectId()
    const them = asProject(project)

    const added = JSON.parse(await os.ok(['image', 'add', 'project', id, project, '-f', 'json'])) as Record<string, unknown>
    expect(added).toMatchObject({ image_id: id, member_id: project, status: 'pending' })
    const members = JSON.parse(await os.ok(['image', 'member', 'list', id, '-f', 'json'])) as Array<Record<string, string>>
    expect(members).toEqual([{ 'Image ID': id, 'Member ID': project, Status: 'pending' }])

    // A pending member can read the image but does not get it in its default list.
    expect((await api.image(id, them)).id).toBe(id)
    const listAs = async (query = ''): Promise<string[]> => {
      const res = await api.fetch(`/v2/images${query}`, { headers: them })
      return ((await res.json()) as { images: Array<{ id: string }> }).images.map(i => i.id)
    }
    expect(await listAs()).not.toContain(id)
    expect(await listAs('?member_status=pending')).toContain(id)

    // `image set --accept` needs the caller's project from a Keystone token, which noauth has not
    // got, so the member accepts through the API as keystonemiddleware would present it.
    const accept = await api.fetch(`/v2/images/${id}/members/${project}`, {
      method: 'PUT', headers: { ...them, 'content-type': 'application/json' }, body: JSON.stringify({ status: 'accepted' })
    })
    expect(accept.status).toBe(200)
    expect(JSON.parse(await os.ok(['image', 'member', 'list', id, '-f', 'json']))).toEqual([{ 'Image ID': id, 'Member ID': project, Status: 'accepted' }])
    expect(await listAs()).toContain(id)
    const read = await api.fetch(`/v2/images/${id}/file`, { headers: them })
    expect(read.status).toBe(200)
    expect(new Uint8Array(await read.arrayBuffer())).toEqual(new Uint8Array(data))

    // OSC 6.0 `image remove project` always looks the project up in Keystone (unlike `add`, which
    // skips that for uuid-like ids), so without Keystone the owner removes the member through the API.
    expect((await os.run(['image', 'remove', 'project', id, project])).code).not.toBe(0)
    expect((await api.fetch(`/v2/images/${id}/members/${project}`, { method: 'DELETE' })).status).toBe(204)
    expect(JSON.parse(await os.ok(['image', 'member', 'list', id, '-f', 'json']))).toEqual([])
    expect((await api.fetch(`/v2/images/${id}`, { headers: them })).status).toBe(404)
  })

  it('a protected image survives image delete until image set --unprotected', async () => {
    const { id } = await smallImage()
    await os.ok(['image', 'set', '--protected', id])
    expect((await api.image(id)).protected).toBe(true)

    const refused = await os.run(['image', 'delete', id])
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toMatch(/403|protected/)
    expect((await api.image(id)).status).toBe('active')

    await os.ok(['image', 'set', '--unprotected', id])
    await os.ok(['image', 'delete', id])
    expect((await api.fetch(`/v2/images/${id}`)).status).toBe(404)
    expect((await api.fetch(`/v2/images/${id}/file`)).status).toBe(404)
  })

  it('image list follows next links across pages and pages by hand with --limit and --marker', async () => {
    const tag = `page-${run}`
    const made = new Set<string>()
    for (let i = 0; i < 30; i++) made.add((await api.create({ name: `page-${run}-${String(i).padStart(2, '0')}`, tags: [tag] })).id)

    // Without --limit the SDK pages on the server's default page size (25) and follows `next`.
    const all = await os.run(['--debug', 'image', 'list', '--tag', tag, '-f', 'json'])
    expect(all.code).toBe(0)
    const rows = JSON.parse(all.stdout) as Row[]
    expect(rows).toHaveLength(30)
    expect(new Set(rows.map(r => r.ID))).toEqual(made)
    expect(listRequests(all.stderr).filter(r => r.includes('marker='))).toHaveLength(1)

    // With --limit, OSC 6.0 turns the SDK's pagination off: each call is one page. OSC re-sorts
    // every page client-side (default --sort name:asc), so the marker (the last image in the
    // server's created_at desc, id desc order) is the last row only if the client keeps that order:
    // its stable sort on created_at:desc does.
    const seen: string[] = []
    let marker: string | undefined
    let pages = 0
    for (;;) {
      const page = await list('--tag', tag, '--limit', '7', '--sort', 'created_at:desc', ...(marker == null ? [] : ['--marker', marker]))
      pages++
      expect(page.length).toBeLessThanOrEqual(7)
      seen.push(...page.map(r => r.ID))
      if (page.length < 7) break
      marker = page[page.length - 1].ID
      expect(pages).toBeLessThan(10)
    }
    expect(pages).toBeGreaterThanOrEqual(5)
    expect(seen).toHaveLength(30)
    expect(new Set(seen)).toEqual(made)
  })

  it('image show and image delete of an unknown id fail with "No Image found"', async () => {
    const missing = randomUUID()
    const shown = await os.run(['image', 'show', missing])
    expect(shown.code).not.toBe(0)
    expect(shown.stderr).toContain(`No Image found for ${missing}`)

    const deleted = await os.run(['image', 'delete', missing])
    expect(deleted.code).not.toBe(0)
    expect(deleted.stderr).toContain('Failed to delete 1 of 1 images')
  })
})
