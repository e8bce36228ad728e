import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ACCESS_EXPECTED, ACCESS_STATES, startAgent } from '@peerglance/testing'
import type { AccessState, TestAgent } from '@peerglance/testing'
import { asProject, glance } from './client.ts'
import type { Reply } from './client.ts'

/*
 * Who may do what to whose image, through the real HTTP server in noauth mode, against what Glance
 * 25 answers with its default (secure RBAC) policy. Project alpha owns every image; beta is the
 * project it is shared with; gamma is anyone else. Every caller states its roles explicitly.
 */

const CALLERS = {
  ownerMember: asProject('alpha', 'member,reader'),
  ownerReader: asProject('alpha', 'reader'),
  memberProject: asProject('beta', 'member,reader'),
  otherProject: asProject('gamma', 'member,reader'),
  admin: asProject('ops', 'admin,member,reader')
}
type Caller = keyof typeof CALLERS
const STATES = ACCESS_STATES
type State = AccessState
const EXPECTED = ACCESS_EXPECTED

const DATA = Buffer.from('image bytes that only the allowed may read')
const TITLES: Record<number, string> = { 403: '403 Forbidden', 404: '404 Not Found' }

let agent: TestAgent
let api: ReturnType<typeof glance>
const fixtures = new Map<State, string>()

beforeAll(async () => {
  agent = await startAgent()
  api = glance(agent.url)
  for (const state of STATES) fixtures.set(state, await imageIn(state))
})
afterAll(async () => { await agent.stop() })

function ok (r: Reply, status: number): Reply {
  expect(r.status, r.text).toBe(status)
  return r
}

/** A fresh image of project alpha in the given state, with data; shared ones have two members. */
async function imageIn (state: State): Promise<string> {
  const visibility = state.startsWith('shared') ? 'shared' : state
  const creator = state === 'public' ? CALLERS.admin : CALLERS.ownerMember
  const id = ok(await api.create({ name: `${state}-image`, visibility, owner: 'alpha' }, creator), 201).json.id as string
  ok(await api.upload(id, DATA, creator), 204)
  if (visibility === 'shared') {
    for (const member of ['beta', 'delta']) {
      ok(await api.call('POST', `/v2/images/${id}/members`, { body: { member }, headers: CALLERS.ownerMember }), 200)
    }
    const answer = { sharedAccepted: 'accepted', sharedRejected: 'rejected' }[state as string]
    if (answer != null) {
      ok(await api.call('PUT', `/v2/images/${id}/members/beta`, { body: { status: answer }, headers: CALLERS.memberProject }), 200)
    }
  }
  return id
}

function expectRefusal (r: Reply, status: number): void {
  expect(r.status, r.text).toBe(status)
  if (status >= 400) expect(r.json).toMatchObject({ code: TITLES[status] })
}

const stored = (id: string): ReturnType<TestAgent['agent']['metadata']['getImage']> => agent.agent.metadata.getImage(id)

const CASES = STATES.flatMap(state => (Object.keys(CALLERS) as Caller[]).map(caller => [state, caller] as const))

describe.each(CASES)('%s image, %s caller', (state, caller) => {
  const [listed, show, download, update, remove, members] = EXPECTED[state][caller]
  const headers = CALLERS[caller]

  it(`is ${listed ? '' : 'not '}listed`, async () => {
    const r = ok(await api.call('GET', '/v2/images?limit=1000', { headers }), 200)
    expect(r.json.images.map((i: { id: string }) => i.id).includes(fixtures.get(state))).toBe(listed)
  })

  it(`show answers ${show}`, async () => {
    const id = fixtures.get(state) as string
    const r = await api.call('GET', `/v2/images/${id}`, { headers })
    expectRefusal(r, show)
    if (show === 200) expect(r.json).toMatchObject({ id, owner: 'alpha', status: 'active', size: DATA.length })
  })

  it(`download answers ${download}`, async () => {
    const r = await api.download(fixtures.get(state) as string, headers)
    expect(r.status).toBe(download)
    if (download === 200) expect(r.bytes.equals(DATA)).toBe(true)
    else expect(r.bytes.includes(DATA)).toBe(false)
  })

  it(`update answers ${update}${update === 200 ? '' : ' and changes nothing'}`, async () => {
    const id = await imageIn(state)
    const before = stored(id)
    const r = await api.patch(id, [{ op: 'replace', path: '/name', value: `renamed-by-${caller}` }, { op: 'add', path: '/os_distro', value: caller }], '2.1', headers)
    expectRefusal(r, update)
    if (update === 200) {
      expect(r.json).toMatchObject({ id, name: `renamed-by-${caller}`, os_distro: caller })
      expect(stored(id)).toMatchObject({ name: `renamed-by-${caller}`, properties: { os_distro: caller } })
    } else {
      expect(stored(id)).toEqual(before)
    }
  })

  it(`delete answers ${remove}${remove === 204 ? '' : ' and deletes nothing'}`, async () => {
    const id = await imageIn(state)
    const before = stored(id)
    const r = await api.call('DELETE', `/v2/images/${id}`, { headers })
    expectRefusal(r, remove)
    if (remove === 204) {
      expect(stored(id)?.status).toBe('deleted')
      expect((await api.download(id, CALLERS.admin)).status).toBe(404)
    } else {
      expect(stored(id)).toEqual(before)
      expect((await api.download(id, CALLERS.ownerMember)).bytes.equals(DATA)).toBe(true)
    }
  })

  it(`member list answers ${members}`, async () => {
    const r = await api.call('GET', `/v2/images/${fixtures.get(state)}/members`, { headers })
    expectRefusal(r, members)
    if (members === 200) {
      // The owner's side sees every membership; a member project only its own.
      const expected = caller === 'memberProject' ? ['beta'] : ['beta', 'delta']
      expect(r.json.members.map((m: { member_id: string }) => m.member_id).sort()).toEqual(expected)
    }
  })
})

describe('membership actions', () => {
  let id: string
  beforeAll(async () => { id = await imageIn('sharedPending') })
  const membersOf = (): string[] => agent.agent.metadata.members(id).map(m => `${m.member_id}:${m.status}`).sort()

  it('only the member project answers its share; the owner gets 403, others 404, and nothing changes', async () => {
    const before = membersOf()
    const put = async (member: string, status: string, caller: Caller): Promise<Reply> =>
      await api.call('PUT', `/v2/images/${id}/members/${member}`, { body: { status }, headers: CALLERS[caller] })
    expectRefusal(await put('beta', 'accepted', 'ownerMember'), 403)
    expectRefusal(await put('beta', 'accepted', 'ownerReader'), 403)
    expectRefusal(await put('beta', 'accepted', 'otherProject'), 404)
    // beta cannot see delta's membership, so it cannot answer for delta either.
    expectRefusal(await put('delta', 'accepted', 'memberProject'), 404)
    expect(membersOf()).toEqual(before)
    expect(ok(await put('beta', 'accepted', 'memberProject'), 200).json).toMatchObject({ member_id: 'beta', status: 'accepted' })
    expect(ok(await put('beta', 'rejected', 'admin'), 200).json).toMatchObject({ status: 'rejected' })
  })

  it('only the owner project\'s members (and admins) add and remove members', async () => {
    const before = membersOf()
    const add = async (caller: Caller): Promise<Reply> => await api.call('POST', `/v2/images/${id}/members`, { body: { member: 'epsilon' }, headers: CALLERS[caller] })
    expectRefusal(await add('ownerReader'), 403)
    expectRefusal(await add('memberProject'), 403)
    expectRefusal(await add('otherProject'), 404)
    const remove = async (member: string, caller: Caller): Promise<Reply> => await api.call('DELETE', `/v2/images/${id}/members/${member}`, { headers: CALLERS[caller] })
    expectRefusal(await remove('beta', 'memberProject'), 403)
    expectRefusal(await remove('delta', 'memberProject'), 404)
    expectRefusal(await remove('beta', 'ownerReader'), 403)
    expectRefusal(await remove('beta', 'otherProject'), 404)
    expect(membersOf()).toEqual(before)
    ok(await add('ownerMember'), 200)
    expect((await remove('epsilon', 'admin')).status).toBe(204)
    expect(membersOf()).toEqual(before)
  })

  it('shows a membership to the owner side and to that member; to others it does not exist', async () => {
    const show = async (member: string, caller: Caller): Promise<Reply> => await api.call('GET', `/v2/images/${id}/members/${member}`, { headers: CALLERS[caller] })
    expect(ok(await show('delta', 'ownerReader'), 200).json).toMatchObject({ image_id: id, member_id: 'delta' })
    expect(ok(await show('beta', 'memberProject'), 200).json).toMatchObject({ member_id: 'beta' })
    expectRefusal(await show('delta', 'memberProject'), 404)
    expectRefusal(await show('beta', 'otherProject'), 404)
  })
})

describe('callers without a Glance role', () => {
  const nobody = asProject('alpha', 'observer')

  it('may neither list nor see even their own project\'s images', async () => {
    expectRefusal(await api.call('GET', '/v2/images', { headers: nobody }), 403)
    expectRefusal(await api.call('GET', `/v2/images/${fixtures.get('private')}`, { headers: nobody }), 404)
    expectRefusal(await api.call('GET', `/v2/images/${fixtures.get('public')}`, { headers: nobody }), 404)
    expectRefusal(await api.create({ name: 'x' }, nobody), 403)
  })
})

describe('publicize and communitize', () => {
  it('lets the owner\'s members communitize but only admins publicize, and keeps the refused image as it was', async () => {
    const id = await imageIn('private')
    const before = stored(id)
    expectRefusal(await api.patch(id, [{ op: 'replace', path: '/visibility', value: 'public' }], '2.1', CALLERS.ownerMember), 403)
    expectRefusal(await api.patch(id, [{ op: 'replace', path: '/visibility', value: 'community' }], '2.1', CALLERS.ownerReader), 403)
    expect(stored(id)).toEqual(before)
    expect(ok(await api.patch(id, [{ op: 'replace', path: '/visibility', value: 'community' }], '2.1', CALLERS.ownerMember), 200).json.visibility).toBe('community')
    expect(ok(await api.patch(id, [{ op: 'replace', path: '/visibility', value: 'public' }], '2.1', CALLERS.admin), 200).json.visibility).toBe('public')
  })
})

describe('deactivated images', () => {
  it('only admins download them; the owner\'s members deactivate and reactivate, readers and others may not', async () => {
    const id = await imageIn('public')
    const action = async (what: string, caller: Caller): Promise<Reply> => await api.call('POST', `/v2/images/${id}/actions/${what}`, { headers: CALLERS[caller] })
    expectRefusal(await action('deactivate', 'ownerReader'), 403)
    expectRefusal(await action('deactivate', 'otherProject'), 403)
    expect(stored(id)?.status).toBe('active')
    expect((await action('deactivate', 'ownerMember')).status).toBe(204)
    expect((await api.download(id, CALLERS.otherProject)).status).toBe(403)
    expect((await api.download(id, CALLERS.ownerMember)).status).toBe(403)
    expect((await api.download(id, CALLERS.admin)).bytes.equals(DATA)).toBe(true)
    expectRefusal(await action('reactivate', 'otherProject'), 403)
    expect(stored(id)?.status).toBe('deactivated')
    expect((await action('reactivate', 'admin')).status).toBe(204)
    expect((await api.download(id, CALLERS.otherProject)).bytes.equals(DATA)).toBe(true)
  })
})

describe('an operator policy', () => {
  it('overrides rules by name through policy.rules, keeping Glance\'s 404 for images the caller may not get', async () => {
    await using own = await startAgent({ config: { policy: { rules: { download_image: 'role:admin', publicize_image: 'role:member and project_id:%(project_id)s' } } } })
    const local = glance(own.url)
    const id = ok(await local.create({ name: 'p' }, CALLERS.ownerMember), 201).json.id as string
    ok(await local.upload(id, DATA, CALLERS.ownerMember), 204)
    expectRefusal(await local.call('GET', `/v2/images/${id}/file`, { headers: CALLERS.ownerMember }), 403)
    expect((await local.download(id, CALLERS.admin)).bytes.equals(DATA)).toBe(true)
    expect(ok(await local.patch(id, [{ op: 'replace', path: '/visibility', value: 'public' }], '2.1', CALLERS.ownerMember), 200).json.visibility).toBe('public')
    expectRefusal(await local.call('GET', `/v2/images/${id}/file`, { headers: CALLERS.otherProject }), 403)
  })

  it('decides who is admin through context_is_admin, for Glance and the ops endpoints alike', async () => {
    await using own = await startAgent({ config: { policy: { rules: { context_is_admin: 'role:cloud_admin' } } } })
    const local = glance(own.url)
    const id = ok(await local.create({ name: 'c', visibility: 'private' }, CALLERS.ownerMember), 201).json.id as string
    const cloudAdmin = asProject('ops', 'cloud_admin')
    expect(ok(await local.call('GET', `/v2/images/${id}`, { headers: cloudAdmin }), 200).json.id).toBe(id)
    ok(await local.call('GET', '/peerglance/v1/status', { headers: cloudAdmin }), 200)
    // The admin role alone is now just a member and reader elsewhere: no private image, no ops.
    expectRefusal(await local.call('GET', `/v2/images/${id}`, { headers: CALLERS.admin }), 404)
    expect((await local.call('GET', '/peerglance/v1/status', { headers: CALLERS.admin })).status).toBe(403)
  })

  it('in legacy mode lets any caller read what it can find and only owners change it', async () => {
    await using own = await startAgent({ config: { policy: { enforceNewDefaults: false } } })
    const local = glance(own.url)
    const id = ok(await local.create({ name: 'l' }, asProject('alpha', 'nothing')), 201).json.id as string
    ok(await local.upload(id, DATA, asProject('alpha', 'nothing')), 204)
    expect((await local.download(id, asProject('alpha', 'nothing'))).bytes.equals(DATA)).toBe(true)
    expectRefusal(await local.call('GET', `/v2/images/${id}`, { headers: CALLERS.otherProject }), 404)
    ok(await local.patch(id, [{ op: 'replace', path: '/visibility', value: 'community' }], '2.1', asProject('alpha', 'nothing')), 200)
    expectRefusal(await local.patch(id, [{ op: 'replace', path: '/name', value: 'x' }], '2.1', CALLERS.otherProject), 403)
    expect((await local.download(id, asProject('gamma', 'nothing'))).bytes.equals(DATA)).toBe(true)
  })
})
