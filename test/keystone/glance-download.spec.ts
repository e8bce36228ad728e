import { createHash, randomBytes } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnAgent, tmpDir, waitFor, type SpawnedAgent } from '@peerglance/testing'
import { issueToken, keystoneEnv, registerService, removeService, type KeystoneEnv } from './keystone.ts'

// glance-download as Glance runs it: the other Glance is found in the caller's own Keystone catalog
// (by region and interface) and asked with the caller's token. Here the "other region" is the
// agent itself, registered under a service type of this test's own.
let env: KeystoneEnv
let dir: string
let agent: SpawnedAgent
const SERVICE_TYPE = `image-glance-download-${randomBytes(4).toString('hex')}`

beforeAll(async () => {
  env = keystoneEnv()
  dir = await tmpDir('peerglance-glance-download-')
  const a = env.accounts.peerglance
  const config = join(dir, 'peerglance.yaml')
  await writeFile(config, JSON.stringify({
    auth: { mode: 'keystone', keystone: { url: env.url, username: a.username, password: a.password, projectName: a.projectName } },
    glance: { enabledImportMethods: ['glance-direct', 'glance-download'] },
    import: { glanceDownload: { serviceType: SERVICE_TYPE } }
  }))
  agent = await spawnAgent({ dataDir: join(dir, 'data'), args: ['--config', config] })
  await registerService(SERVICE_TYPE, agent.url)
})

afterAll(async () => {
  await removeService(SERVICE_TYPE).catch(() => {})
  await agent?.kill()
  await rm(dir, { recursive: true, force: true })
})

describe('glance-download through the caller\'s Keystone catalog', () => {
  it('copies the formats, the properties Glance copies and the bytes; a bad region fails the task and keeps the image as it was', async () => {
    const { token } = await issueToken(env.accounts['alpha-member'])
    const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> =>
      await fetch(new URL(path, agent.url), { method, headers: { 'x-auth-token': token, 'content-type': 'application/json', ...headers }, body: body === undefined ? undefined : (Buffer.isBuffer(body) ? body : JSON.stringify(body)) })
    const data = randomBytes(3 * 1024 * 1024 + 1)
    const src = await (await call('POST', '/v2/images', { name: 'src', disk_format: 'raw', container_format: 'bare', hw_cpu_cores: '5', os_distro: 'rhel', speed: '88mph' })).json() as { id: string }
    expect((await call('PUT', `/v2/images/${src.id}/file`, data, { 'content-type': 'application/octet-stream' })).status).toBe(204)

    const dst = await (await call('POST', '/v2/images', { name: 'dst', disk_format: 'iso', container_format: 'ovf', os_distro: 'windows' })).json() as { id: string }
    const r = await call('POST', `/v2/images/${dst.id}/import`, { method: { name: 'glance-download', glance_image_id: src.id, glance_region: env.region } })
    expect(r.status).toBe(202)
    const done = await waitFor(async () => {
      const tasks = (await (await call('GET', `/v2/images/${dst.id}/tasks`)).json() as { tasks: Array<{ status: string }> }).tasks
      return tasks[0]?.status === 'success' ? tasks : undefined
    }, { what: 'the glance-download task', timeoutMs: 30_000 })
    expect(done).toHaveLength(1)
    const image = await (await call('GET', `/v2/images/${dst.id}`)).json() as Record<string, unknown>
    expect(image).toMatchObject({
      status: 'active', disk_format: 'raw', container_format: 'bare', hw_cpu_cores: '5', os_distro: 'rhel',
      size: data.length, os_hash_value: createHash('sha512').update(data).digest('hex')
    })
    expect(image.speed).toBeUndefined()

    expect((await call('POST', `/v2/images/${src.id}/import`, { method: { name: 'glance-download', glance_image_id: 'foo', glance_region: env.region } })).status).toBe(409)
    const other = await (await call('POST', '/v2/images', { name: 'other', disk_format: 'iso', container_format: 'ovf', hw_cpu_cores: '1' })).json() as { id: string }
    const bad = await call('POST', `/v2/images/${other.id}/import`, { method: { name: 'glance-download', glance_image_id: 'foo', glance_region: env.region } })
    expect(bad.status).toBe(400)
    expect(await bad.text()).toContain('does not look like a UUID')
    expect((await call('POST', `/v2/images/${other.id}/import`, { method: { name: 'glance-download', glance_image_id: src.id, glance_region: 'NoSuchRegion' } })).status).toBe(202)
    await waitFor(async () => {
      const tasks = (await (await call('GET', `/v2/images/${other.id}/tasks`)).json() as { tasks: Array<{ status: string }> }).tasks
      return tasks[0]?.status === 'failure'
    }, { what: 'the bad-region task failing' })
    expect(await (await call('GET', `/v2/images/${other.id}`)).json()).toMatchObject({ status: 'queued', disk_format: 'iso', container_format: 'ovf', hw_cpu_cores: '1', size: null })
  })
})
