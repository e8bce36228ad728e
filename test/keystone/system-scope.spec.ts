import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAgent, tmpDir } from '@peerglance/testing'
import type { TestAgent } from '@peerglance/testing'
import { glanceCli } from '../clients/cli.ts'
import { issueToken, keystoneEnv } from './keystone.ts'

// A system-scoped admin token (`openstack --os-system-scope all`, Keystone's admin has the admin
// role on the system) against an agent with `policy.enforceScope`, as glance_tempest_plugin's
// `[enforce_scope] glance = true` expects of Glance: every status and JSON body below is what
// Debian's Glance 25 answered the same requests with `[oslo_policy] enforce_scope = true`
// (scripts/glance.sh with GL_ENFORCE_SCOPE=true; docs/conformance.md).

const env = keystoneEnv()
const NOT_FOUND = { message: 'The resource could not be found.<br /><br />\n\n\n', code: '404 Not Found', title: 'Not Found' }
const forbidden = (rule: string): unknown => ({ message: `You are not authorized to complete ${rule} action.<br /><br />\n\n\n`, code: '403 Forbidden', title: 'Forbidden' })
const MEMBER = '0123456789abcdef0123456789abcdef'

let scoped: TestAgent
let unscoped: TestAgent
let systemToken: string
let projectToken: string
let image: string
let shared: string

async function systemScopedToken (): Promise<string> {
  const admin = env.accounts.admin
  const res = await fetch(`${env.url}/auth/tokens?nocatalog`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: admin.username, domain: { name: 'Default' }, password: admin.password } } }, scope: { system: { all: true } } } })
  })
  expect(res.status).toBe(201)
  const body = await res.json() as { token: { system?: { all?: boolean }, project?: unknown } }
  expect(body.token.system?.all).toBe(true)
  expect(body.token.project).toBeUndefined()
  return res.headers.get('x-subject-token') as string
}

async function call (agent: TestAgent, token: string, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number, json: any }> {
  const res = await fetch(`${agent.url}${path}`, {
    method,
    headers: { accept: 'application/json', 'x-auth-token': token, ...body === undefined ? {} : { 'content-type': contentType } },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  })
  const text = await res.text()
  let json: unknown = text
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, json }
}

function agentConfig (enforceScope: boolean): Parameters<typeof startAgent>[0] {
  const a = env.accounts.peerglance
  return {
    config: {
      auth: { mode: 'keystone', keystone: { url: env.url, username: a.username, password: a.password, projectName: a.projectName, cacheSeconds: 60 } },
      glance: { enabledImportMethods: ['glance-direct', 'copy-image'] },
      policy: { enforceScope }
    }
  }
}

beforeAll(async () => {
  scoped = await startAgent(agentConfig(true))
  unscoped = await startAgent(agentConfig(false))
  systemToken = await systemScopedToken()
  projectToken = (await issueToken(env.accounts.admin)).token
  image = (await call(scoped, projectToken, 'POST', '/v2/images', { name: 'scoped', disk_format: 'raw', container_format: 'bare' })).json.id
  expect((await call(scoped, projectToken, 'PUT', `/v2/images/${image}/file`, 'hello', 'application/octet-stream')).status).toBe(204)
  shared = (await call(scoped, projectToken, 'POST', '/v2/images', { name: 'shared', visibility: 'shared' })).json.id
  expect((await call(scoped, projectToken, 'POST', `/v2/images/${shared}/members`, { member: MEMBER })).status).toBe(200)
})
afterAll(async () => { await Promise.all([scoped?.stop(), unscoped?.stop()]) })

describe('a system-scoped admin token with policy.enforceScope', () => {
  it.each([
    ['POST', '/v2/images', { name: 'x', visibility: 'public' }, 403, forbidden('add_image')],
    ['GET', '/v2/images', undefined, 403, forbidden('get_images')],
    ['GET', '/v2/tasks', undefined, 403, forbidden('tasks_api_access')],
    ['GET', '/v2/info/stores/detail', undefined, 403, forbidden('stores_info_detail')],
    ['GET', '/v2/cache', undefined, 403, forbidden('cache_list')],
    ['GET', '/v2/metadefs/namespaces', undefined, 404, NOT_FOUND],
    ['GET', '/v2/metadefs/resource_types', undefined, 404, NOT_FOUND]
  ])('%s %s answers %i as Glance 25 does', async (method, path, body, status, json) => {
    expect(await call(scoped, systemToken, method, path, body)).toEqual({ status, json })
  })

  it('finds images (it is an admin) and is refused each with 404, as Glance hides a refusal of get_image', async () => {
    const patch = [{ op: 'replace', path: '/name', value: 'renamed' }]
    const requests: Array<[string, string, unknown?, string?]> = [
      ['GET', `/v2/images/${image}`],
      ['PATCH', `/v2/images/${image}`, JSON.stringify(patch), 'application/openstack-images-v2.1-json-patch'],
      ['PUT', `/v2/images/${image}/file`, 'x', 'application/octet-stream'],
      ['GET', `/v2/images/${image}/file`],
      ['POST', `/v2/images/${image}/actions/deactivate`],
      ['POST', `/v2/images/${image}/actions/reactivate`],
      ['POST', `/v2/images/${image}/import`, { method: { name: 'copy-image' }, stores: ['default'] }],
      ['DELETE', `/v2/images/${image}`],
      ['GET', `/v2/images/${shared}/members`],
      ['GET', `/v2/images/${shared}/members/${MEMBER}`],
      ['PUT', `/v2/images/${shared}/members/${MEMBER}`, { status: 'accepted' }],
      ['POST', `/v2/images/${shared}/members`, { member: 'fedcba9876543210fedcba9876543210' }],
      ['DELETE', `/v2/images/${shared}/members/${MEMBER}`]
    ]
    for (const [method, path, body, type] of requests) {
      expect(await call(scoped, systemToken, method, path, body, type), `${method} ${path}`).toEqual({ status: 404, json: NOT_FOUND })
    }
    // An image that does not exist gets the database layer's own message.
    const none = '00000000-0000-0000-0000-000000000000'
    expect((await call(scoped, systemToken, 'GET', `/v2/images/${none}`)).json.message).toBe(`No image found with ID ${none}<br /><br />\n\n\n`)
  })

  it('changed nothing: the image keeps its name, data, status and member', async () => {
    const got = await call(scoped, projectToken, 'GET', `/v2/images/${image}`)
    expect(got.json).toMatchObject({ name: 'scoped', status: 'active', size: 5 })
    const members = await call(scoped, projectToken, 'GET', `/v2/images/${shared}/members`)
    expect(members.json.members.map((m: { member_id: string, status: string }) => [m.member_id, m.status])).toEqual([[MEMBER, 'pending']])
  })

  it('still serves what no rule guards (discovery, schemas), and project-scoped admins everything', async () => {
    expect((await call(scoped, systemToken, 'GET', '/v2/info/import')).status).toBe(200)
    expect((await call(scoped, systemToken, 'GET', '/v2/schemas/image')).status).toBe(200)
    expect((await call(scoped, projectToken, 'GET', '/v2/images')).status).toBe(200)
  })

  it('is what glanceclient shows its user', async () => {
    const glance = glanceCli(scoped.url, await tmpDir('peerglance-glance-scope-'), systemToken)
    const list = await glance.run(['image-list'])
    expect(list.code).not.toBe(0)
    expect(list.stderr.trim()).toBe('HTTP 403 Forbidden: You are not authorized to complete get_images action.')
    const show = await glance.run(['image-show', image])
    expect(show.code).not.toBe(0)
    expect(show.stderr.trim()).toBe('HTTP 404 Not Found: The resource could not be found.')
  })
})

describe('a system-scoped admin token without enforceScope (Glance 25\'s default)', () => {
  it('is an admin like any other: it lists and shows another project\'s private image', async () => {
    const own = (await call(unscoped, projectToken, 'POST', '/v2/images', { name: 'unscoped' })).json.id
    const list = await call(unscoped, systemToken, 'GET', '/v2/images')
    expect(list.status).toBe(200)
    expect(list.json.images.map((i: { id: string }) => i.id)).toContain(own)
    expect(await call(unscoped, systemToken, 'GET', `/v2/images/${own}`)).toMatchObject({ status: 200, json: { id: own, name: 'unscoped' } })
  })
})
