import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ACCESS_EXPECTED, ACCESS_STATES, startAgent } from '@peerglance/testing'
import type { AccessCaller, AccessState, TestAgent } from '@peerglance/testing'
import { issueToken, keystoneEnv } from './keystone.ts'
import type { KeystoneEnv } from './keystone.ts'

// The cross-project access matrix of packages/glance-api/test/access-matrix.spec.ts, with the
// callers' identities from real Keystone tokens instead of noauth headers: the same expectations
// (Glance 25's defaults), the projects alpha and beta that scripts/keystone.sh makes. It has no
// third project, so the "other project" column runs in the noauth matrix only.

type Caller = Exclude<AccessCaller, 'otherProject'>
const ACCOUNTS: Record<Caller, keyof KeystoneEnv['accounts']> = { ownerMember: 'alpha-member', ownerReader: 'alpha-reader', memberProject: 'beta-member', admin: 'admin' }
const DATA = Buffer.from('image bytes that only the allowed may read')

let agent: TestAgent
const tokens = new Map<Caller, string>()
const fixtures = new Map<AccessState, string>()
const env = keystoneEnv()
const alpha = env.accounts['alpha-member'].projectId
const beta = env.accounts['beta-member'].projectId

async function call (caller: Caller, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number, json: any, bytes: Buffer }> {
  const res = await fetch(`${agent.url}${path}`, {
    method,
    headers: { accept: 'application/json', 'x-auth-token': tokens.get(caller)!, ...body === undefined ? {} : { 'content-type': contentType } },
    body: body === undefined ? undefined : Buffer.isBuffer(body) ? body : JSON.stringify(body)
  })
  const bytes = Buffer.from(await res.arrayBuffer())
  let json: unknown
  try { json = JSON.parse(bytes.toString('utf8')) } catch {}
  return { status: res.status, json, bytes }
}

async function must (status: number, reply: Promise<{ status: number, json: any, bytes: Buffer }>): Promise<any> {
  const r = await reply
  expect(r.status, r.bytes.toString('utf8')).toBe(status)
  return r.json
}

/** A fresh image of project alpha in the given state, with data; shared ones have two members. */
async function imageIn (state: AccessState): Promise<string> {
  const visibility = state.startsWith('shared') ? 'shared' : state
  const creator: Caller = state === 'public' ? 'admin' : 'ownerMember'
  const { id } = await must(201, call(creator, 'POST', '/v2/images', { name: `${state}-image`, visibility, owner: alpha, disk_format: 'raw', container_format: 'bare' }))
  await must(204, call(creator, 'PUT', `/v2/images/${id}/file`, DATA, 'application/octet-stream'))
  if (visibility === 'shared') {
    for (const member of [beta, randomUUID().replaceAll('-', '')]) await must(200, call('ownerMember', 'POST', `/v2/images/${id}/members`, { member }))
    const answer = { sharedAccepted: 'accepted', sharedRejected: 'rejected' }[state as string]
    if (answer != null) await must(200, call('memberProject', 'PUT', `/v2/images/${id}/members/${beta}`, { status: answer }))
  }
  return id
}

beforeAll(async () => {
  const a = env.accounts.peerglance
  agent = await startAgent({ config: { auth: { mode: 'keystone', keystone: { url: env.url, username: a.username, password: a.password, projectName: a.projectName, cacheSeconds: 60 } } } })
  for (const [caller, account] of Object.entries(ACCOUNTS) as Array<[Caller, keyof KeystoneEnv['accounts']]>) tokens.set(caller, (await issueToken(env.accounts[account])).token)
  for (const state of ACCESS_STATES) fixtures.set(state, await imageIn(state))
})
afterAll(async () => { await agent?.stop() })

const CASES = ACCESS_STATES.flatMap(state => (Object.keys(ACCOUNTS) as Caller[]).map(caller => [state, caller] as const))

describe.each(CASES)('with Keystone tokens: %s image, %s caller', (state, caller) => {
  const [listed, show, download, update, remove, members] = ACCESS_EXPECTED[state][caller]

  it(`is ${listed ? '' : 'not '}listed; show ${show}, download ${download}, members ${members}`, async () => {
    const id = fixtures.get(state)!
    const list = await must(200, call(caller, 'GET', '/v2/images?limit=1000'))
    expect(list.images.map((i: { id: string }) => i.id).includes(id)).toBe(listed)
    expect((await call(caller, 'GET', `/v2/images/${id}`)).status).toBe(show)
    const got = await call(caller, 'GET', `/v2/images/${id}/file`)
    expect(got.status).toBe(download)
    expect(got.bytes.equals(DATA)).toBe(download === 200)
    expect((await call(caller, 'GET', `/v2/images/${id}/members`)).status).toBe(members)
  })

  it(`update answers ${update}, delete ${remove}; a refusal changes nothing`, async () => {
    const id = await imageIn(state)
    const renamed = await call(caller, 'PATCH', `/v2/images/${id}`, [{ op: 'replace', path: '/name', value: `renamed-by-${caller}` }], 'application/openstack-images-v2.1-json-patch')
    expect(renamed.status).toBe(update)
    const after = await must(200, call('admin', 'GET', `/v2/images/${id}`))
    expect(after.name).toBe(update === 200 ? `renamed-by-${caller}` : `${state}-image`)
    expect((await call(caller, 'DELETE', `/v2/images/${id}`)).status).toBe(remove)
    expect((await call('admin', 'GET', `/v2/images/${id}`)).status).toBe(remove === 204 ? 404 : 200)
  })
})
