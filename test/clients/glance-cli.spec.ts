import { execFile } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { md5File, randomFile, sha512File, spawnAgent, tmpDir } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'
import { asProject, glanceApi, glanceCli, idsIn, listRequests, tableValue } from './cli.ts'
import type { Cli } from './cli.ts'

const MIB = 1024 * 1024

describe('glance CLI (python3-glanceclient 4.1) against a spawned agent', () => {
  let dir: string
  let home: string
  let agent: SpawnedAgent
  let glance: Cli
  let api: ReturnType<typeof glanceApi>
  let qcow2: string
  const run = randomBytes(4).toString('hex')

  beforeAll(async () => {
    dir = await tmpDir('peerglance-glance-')
    // A fresh HOME per run: glance caches the image schema in ~/.glanceclient and builds its
    // options from that cache on later calls (glance-api.md §26).
    home = join(dir, 'home')
    await mkdir(home)
    agent = await spawnAgent({ dataDir: join(dir, 'data') })
    glance = glanceCli(agent.url, home)
    api = glanceApi(agent.url)
    qcow2 = join(dir, 'x.qcow2')
    await promisify(execFile)('qemu-img', ['create', '-f', 'qcow2', qcow2, '64M'], { timeout: 30_000 })
  })

  afterAll(async () => {
    const code = await agent?.kill('SIGTERM')
    if (dir != null) await rm(dir, { recursive: true, force: true })
    expect(code).toBe(0)
  })

  /** The ids `glance image-list` prints, in its order. */
  async function list (...args: string[]): Promise<string[]> {
    return idsIn(await glance.ok(['image-list', ...args]))
  }

  async function smallImage (body: Record<string, unknown> = {}): Promise<{ id: string, data: Uint8Array }> {
    const image = await api.create({ name: `small-${run}-${randomUUID()}`, disk_format: 'raw', container_format: 'bare', ...body })
    const data = randomBytes(4096)
    await api.upload(image.id, data)
    return { id: image.id, data }
  }

  it('keeps working once it has cached the image schema in ~/.glanceclient', async () => {
    // The first call runs on glanceclient's built-in schema and caches the server's one.
    await glance.ok(['image-list'])
    const cached = JSON.parse(await readFile(join(home, '.glanceclient', 'image_schema.json'), 'utf8')) as { properties: Record<string, unknown> }
    expect(cached.properties).toHaveProperty('os_hash_value')
    // A `stores` property would make every later call die with "conflicting option string: --stores".
    expect(cached.properties).not.toHaveProperty('stores')

    const second = await glance.run(['image-list'])
    expect(second.stderr).not.toMatch(/conflicting option/)
    expect(second.code).toBe(0)
    const help = await glance.ok(['help', 'image-create'])
    expect(help).toContain('--os-distro')
  })

  it('image-create --file uploads a qcow2 and the API reports its size, virtual size and hashes', async () => {
    const out = await glance.ok(['image-create', '--file', qcow2, '--disk-format', 'qcow2', '--container-format', 'bare', '--name', `qcow2-${run}`])
    const id = tableValue(out, 'id')
    // glanceclient re-reads the image after the upload, so its table already says active.
    expect(tableValue(out, 'status')).toBe('active')

    expect(await api.image(id)).toMatchObject({
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
  })

  it('a 200 MiB raw image goes up with image-create --file and comes back byte-exact with image-download', async () => {
    const file = join(dir, 'big.raw')
    await randomFile(file, 200 * MIB)
    const sha512 = await sha512File(file)
    const id = tableValue(await glance.ok(['image-create', '--file', file, '--disk-format', 'raw', '--container-format', 'bare', '--name', `big-${run}`]), 'id')

    expect(await api.image(id)).toMatchObject({
      status: 'active', size: 200 * MIB, virtual_size: 200 * MIB, checksum: await md5File(file), os_hash_algo: 'sha512', os_hash_value: sha512
    })

    // glanceclient verifies the stream against os_hash_value and fails with "Corrupt image download".
    const saved = join(dir, 'big.saved')
    await glance.ok(['image-download', '--file', saved, id])
    expect((await stat(saved)).size).toBe(200 * MIB)
    expect(await sha512File(saved)).toBe(sha512)
    await rm(file)
    await rm(saved)
  })

  it('image-create without data leaves a queued image that image-upload fills', async () => {
    // With stdin closed glanceclient sends no data; an empty stdin would give an active 0-byte image.
    const out = await glance.ok(['image-create', '--disk-format', 'raw', '--container-format', 'bare', '--name', `later-${run}`])
    const id = tableValue(out, 'id')
    expect(await api.image(id)).toMatchObject({ status: 'queued', size: null, checksum: null })
    expect((await api.fetch(`/v2/images/${id}/file`)).status).toBe(204)
    const none = await glance.run(['image-download', '--file', join(dir, 'none'), id])
    expect(none.stderr + none.stdout).toContain('has no data')

    const file = join(dir, 'later.raw')
    await randomFile(file, MIB + 1)
    await glance.ok(['image-upload', '--file', file, id])
    expect(await api.image(id)).toMatchObject({ status: 'active', size: MIB + 1, os_hash_value: await sha512File(file) })
  })

  it('image-create-via-import --file stages and imports; the image ends active with its hashes', async () => {
    const file = join(dir, 'import.raw')
    await randomFile(file, 5 * MIB + 3)
    const out = await glance.ok(['image-create-via-import', '--file', file, '--disk-format', 'raw', '--container-format', 'bare', '--name', `import-${run}`])
    const id = tableValue(out, 'id')

    const image = await api.waitForStatus(id, 'active')
    expect(image).toMatchObject({ size: 5 * MIB + 3, checksum: await md5File(file), os_hash_algo: 'sha512', os_hash_value: await sha512File(file) })
    const saved = join(dir, 'import.saved')
    await glance.ok(['image-download', '--file', saved, id])
    expect(await sha512File(saved)).toBe(await sha512File(file))
  })

  it('image-list filters by property, tag, checksum, visibility and hidden, and sorts by name', async () => {
    const tag = `tag-${run}`
    const a = await smallImage({ name: `c-${run}`, os_distro: `distro-${run}`, tags: [tag] })
    const b = await smallImage({ name: `a-${run}`, tags: [tag] })
    const c = await api.create({ name: `b-${run}`, tags: [tag], visibility: 'private' })
    const hidden = await api.create({ name: `hidden-${run}`, os_hidden: true })

    expect(await list('--property-filter', `os_distro=distro-${run}`)).toEqual([a.id])
    expect(await list('--tag', tag, '--sort-key', 'name', '--sort-dir', 'asc')).toEqual([b.id, c.id, a.id])
    expect(await list('--tag', tag, '--sort-key', 'name', '--sort-dir', 'desc')).toEqual([a.id, c.id, b.id])
    expect(await list('--tag', tag, '--visibility', 'private')).toEqual([c.id])
    expect(await list('--checksum', (await api.image(b.id)).checksum)).toEqual([b.id])
    expect(await list('--hash', (await api.image(a.id)).os_hash_value)).toEqual([a.id])

    // `--hidden True` sends os_hidden=True (capitalised), which Glance accepts.
    expect(await list('--hidden', 'True')).toContain(hidden.id)
    expect(await list()).not.toContain(hidden.id)
  })

  it('image-update sets name, min ram, min disk and properties; --remove-property drops one', async () => {
    const { id } = await smallImage()
    await glance.ok(['image-update', '--name', `renamed-${run}`, '--min-ram', '1024', '--min-disk', '5', '--property', 'os_distro=debian', '--property', 'hw_qemu_guest_agent=yes', id])
    expect(await api.image(id)).toMatchObject({ name: `renamed-${run}`, min_ram: 1024, min_disk: 5, os_distro: 'debian', hw_qemu_guest_agent: 'yes' })

    await glance.ok(['image-update', '--property', 'os_distro=ubuntu', '--remove-property', 'hw_qemu_guest_agent', id])
    const image = await api.image(id)
    expect(image.os_distro).toBe('ubuntu')
    expect(image).not.toHaveProperty('hw_qemu_guest_agent')
    expect(image).toMatchObject({ name: `renamed-${run}`, min_ram: 1024, min_disk: 5, status: 'active' })
  })

  it('image-tag-update adds a tag, image-tag-delete removes it, and deleting a missing tag is a 404', async () => {
    const { id } = await smallImage()
    await glance.ok(['image-tag-update', id, 'alpha'])
    await glance.ok(['image-tag-update', id, 'beta'])
    expect((await api.image(id)).tags.sort()).toEqual(['alpha', 'beta'])

    // glanceclient's image-update re-sends all tags as a `replace`: they must survive it.
    await glance.ok(['image-update', '--property', 'k=v', id])
    expect((await api.image(id)).tags.sort()).toEqual(['alpha', 'beta'])

    await glance.ok(['image-tag-delete', id, 'alpha'])
    expect((await api.image(id)).tags).toEqual(['beta'])
    const missing = await glance.run(['image-tag-delete', id, 'alpha'])
    expect(missing.code).not.toBe(0)
    expect(missing.stderr).toContain('HTTP 404 Not Found')
  })

  it('image-deactivate stops non-admin downloads until image-reactivate', async () => {
    const { id, data } = await smallImage()
    const member = asProject('admin', 'member')

    await glance.ok(['image-deactivate', id])
    expect((await api.image(id)).status).toBe('deactivated')
    expect((await api.fetch(`/v2/images/${id}/file`, { headers: member })).status).toBe(403)
    // The CLI's caller is an admin here, and Glance lets admins read deactivated images.
    const saved = join(dir, 'deactivated.saved')
    await glance.ok(['image-download', '--file', saved, id])
    expect(Buffer.compare(await readFile(saved), data)).toBe(0)

    await glance.ok(['image-reactivate', id])
    expect((await api.image(id)).status).toBe('active')
    const read = await api.fetch(`/v2/images/${id}/file`, { headers: member })
    expect(read.status).toBe(200)
    expect(Buffer.compare(Buffer.from(await read.arrayBuffer()), data)).toBe(0)
  })

  it('member-create shares an image, member-update accepts it, member-list shows it, member-delete ends it', async () => {
    const { id, data } = await smallImage({ visibility: 'shared' })
    const project = randomUUID().replaceAll('-', '')
    const them = asProject(project)
    const listAs = async (query = ''): Promise<string[]> => {
      const res = await api.fetch(`/v2/images${query}`, { headers: them })
      return ((await res.json()) as { images: Array<{ id: string }> }).images.map(i => i.id)
    }

    const created = await glance.ok(['member-create', id, project])
    expect(created).toMatch(new RegExp(`${id}\\s*\\|\\s*${project}\\s*\\|\\s*pending`))
    expect((await api.image(id, them)).id).toBe(id)
    expect(await listAs()).not.toContain(id)

    // The admin may set another project's member status (policy modify_member).
    await glance.ok(['member-update', id, project, 'accepted'])
    expect(await glance.ok(['member-list', '--image-id', id])).toMatch(new RegExp(`${id}\\s*\\|\\s*${project}\\s*\\|\\s*accepted`))
    expect(await listAs()).toContain(id)
    const read = await api.fetch(`/v2/images/${id}/file`, { headers: them })
    expect(read.status).toBe(200)
    expect(Buffer.compare(Buffer.from(await read.arrayBuffer()), data)).toBe(0)

    await glance.ok(['member-update', id, project, 'rejected'])
    expect(await listAs()).not.toContain(id)
    expect(await listAs('?member_status=rejected')).toContain(id)

    await glance.ok(['member-delete', id, project])
    expect(idsIn(await glance.ok(['member-list', '--image-id', id]))).toEqual([])
    expect((await api.fetch(`/v2/images/${id}`, { headers: them })).status).toBe(404)
  })

  it('a protected image survives image-delete until image-update --protected False', async () => {
    const { id } = await smallImage()
    await glance.ok(['image-update', '--protected', 'True', id])
    expect((await api.image(id)).protected).toBe(true)

    const refused = await glance.run(['image-delete', id])
    expect(refused.code).not.toBe(0)
    // glanceclient turns the 403 into its own sentence.
    expect(refused.stderr).toContain(`You are not permitted to delete the image '${id}'`)
    expect((await api.image(id)).status).toBe('active')

    await glance.ok(['image-update', '--protected', 'False', id])
    await glance.ok(['image-delete', id])
    expect((await api.fetch(`/v2/images/${id}`)).status).toBe(404)
  })

  it('image-list --page-size follows next links over several pages and returns every image once', async () => {
    const tag = `page-${run}`
    const made = new Set<string>()
    for (let i = 0; i < 30; i++) made.add((await api.create({ name: `page-${run}-${String(i).padStart(2, '0')}`, tags: [tag] })).id)

    const result = await glance.run(['--debug', 'image-list', '--tag', tag, '--page-size', '7'])
    expect(result.code).toBe(0)
    const ids = idsIn(result.stdout)
    expect(ids).toHaveLength(30)
    expect(new Set(ids)).toEqual(made)
    // 7 + 7 + 7 + 7 + 2: the first request and four that follow `next` (which carries the marker).
    const requests = listRequests(result.stderr)
    expect(requests).toHaveLength(5)
    expect(requests.slice(1).every(r => r.includes('marker='))).toBe(true)

    expect(await list('--tag', tag, '--limit', '10', '--page-size', '4')).toHaveLength(10)
  })

  it('image-show and image-download of an unknown id print the HTTP 404', async () => {
    const missing = randomUUID()
    const shown = await glance.run(['image-show', missing])
    expect(shown.code).not.toBe(0)
    expect(shown.stderr).toContain('HTTP 404 Not Found')
    expect(shown.stderr).toContain(missing)

    const downloaded = await glance.run(['image-download', '--file', join(dir, 'missing'), missing])
    expect(downloaded.code).not.toBe(0)
    expect(downloaded.stderr).toContain(`Unable to download image '${missing}'`)
  })
})
