import { request } from 'node:http'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAgent } from '@peerglance/testing'
import type { TestAgent } from '@peerglance/testing'
import { asProject, glance } from './client.ts'

/*
 * Property-based fuzzing of the HTTP API: whatever the headers, bodies, patch documents, filters,
 * ranges and ids, the agent answers below 500, keeps answering, and a refused request stores
 * nothing. Each property runs for at most TIME_LIMIT_MS; a failure prints fast-check's seed and
 * the shrunk input, so it can be replayed with `{ seed, path }`.
 */

const TIME_LIMIT_MS = 1500
const RUNS = 300
const run = { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false }

const OWNER = asProject('alpha', 'member,reader')
const DATA = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251))
const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype', '__defineGetter__', 'isPrototypeOf']

let agent: TestAgent
let api: ReturnType<typeof glance>
let imageId: string

beforeAll(async () => {
  agent = await startAgent()
  api = glance(agent.url)
  imageId = (await api.create({ name: 'fuzz', visibility: 'shared', os_distro: 'x' }, OWNER)).json.id
  expect((await api.upload(imageId, DATA, OWNER)).status).toBe(204)
  expect((await api.call('POST', `/v2/images/${imageId}/members`, { body: { member: 'beta' }, headers: OWNER })).status).toBe(200)
})
afterAll(async () => { await agent.stop() })

/** Everything the agent has stored about images and members, to show a refusal changed nothing. */
function snapshot (): string {
  const images = [...agent.agent.metadata.images()].sort((a, b) => a.id.localeCompare(b.id))
  return JSON.stringify(images.map(i => [i, agent.agent.metadata.members(i.id)]))
}

async function expectAlive (): Promise<void> {
  expect((await api.call('GET', '/versions')).status).toBe(200)
}

/**
 * A raw request, so headers and targets reach the server as written (fetch would normalise them).
 * One connection each: a fuzzed header such as a Content-Length the body does not match breaks the
 * framing of the connection it is sent on, which is the client's fault, not the next request's.
 */
async function raw (method: string, target: string, headers: Record<string, string>, body?: string): Promise<{ status: number, body: string }> {
  const { hostname, port } = new URL(agent.url)
  return await new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, method, path: target, headers, timeout: 10_000, agent: false }, res => {
      let text = ''
      res.setEncoding('utf8').on('data', (d: string) => { text += d }).on('end', () => { resolve({ status: res.statusCode ?? 0, body: text }) })
    })
    req.on('error', reject).on('timeout', () => { req.destroy(new Error('request timed out')) })
    // Node frames a DELETE or OPTIONS body only when told its length.
    if (body !== undefined) req.setHeader('content-length', Buffer.byteLength(body))
    req.end(body)
  })
}

const anyText = fc.oneof(fc.string(), fc.constantFrom(...PROTOTYPE_KEYS), fc.constantFrom('', ' ', '%', '%00', '..', '../..', '\u00e9', '🙂'))
// Header values Node will send: visible ASCII and spaces (CR, LF and NUL are refused client-side).
const headerValue = fc.string({ unit: fc.constantFrom(...' !"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~'.split('')) })
const path = fc.oneof(
  fc.constantFrom('/v2/images', '/v2/images/{id}', '/v2/images/{id}/file', '/v2/images/{id}/stage', '/v2/images/{id}/import',
    '/v2/images/{id}/members', '/v2/images/{id}/members/beta', '/v2/images/{id}/tags/t', '/v2/images/{id}/actions/deactivate',
    '/v2/images/{id}/tasks', '/v2/schemas/image', '/v2/info/usage', '/versions', '/', '/v2.9/images', 'http://example.test/v2/images/{id}'),
  fc.string().map(s => `/v2/${encodeURIComponent(s)}`)
)

describe('fuzzing the HTTP API', () => {
  it('any headers on any route: no 5xx, and a refusal stores nothing', async () => {
    const names = fc.oneof(
      fc.constantFrom('x-roles', 'x-project-id', 'x-tenant-id', 'x-user-id', 'content-type', 'accept', 'range', 'content-range',
        'x-openstack-request-id', 'x-image-meta-store', 'x-openstack-image-size', 'x-auth-token', 'x-service-token', 'x-forwarded-for'),
      // Framing headers are the client's to get right; a wrong one only stalls its own connection.
      fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/).filter(name => name !== 'content-length' && name !== 'transfer-encoding')
    )
    await fc.assert(fc.asyncProperty(
      fc.constantFrom('GET', 'PUT', 'POST', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'), path, fc.dictionary(names, headerValue, { maxKeys: 6 }),
      fc.option(fc.oneof(fc.json(), fc.string()), { nil: undefined }),
      async (method, template, headers, body) => {
        // Only the admin may destroy the shared fixture, and then nothing is left to fuzz; keep a
        // caller that may not delete it (noauth takes a blank X-Roles as absent, hence admin).
        const all = { ...headers, 'x-roles': headers['x-roles'] ?? 'reader', 'x-project-id': headers['x-project-id'] ?? 'gamma' }
        if (all['x-roles'].trim() === '' || /(^|,)\s*admin\s*(,|$)/i.test(all['x-roles'])) all['x-roles'] = 'reader'
        if (all['x-project-id'].trim() === 'alpha') all['x-project-id'] = 'gamma'
        const before = snapshot()
        const r = await raw(method, template.replace('{id}', imageId), all, method === 'GET' || method === 'HEAD' ? undefined : body)
        expect(r.status, r.body).toBeLessThan(500)
        if (r.status >= 400) expect(snapshot()).toBe(before)
      }), run)
    await expectAlive()
  })

  it('any JSON body to create an image: no 5xx, and a refusal creates nothing', async () => {
    const deep = fc.integer({ min: 1, max: 20_000 }).map(n => `${'['.repeat(n)}${']'.repeat(n)}`)
    const deepObject = fc.integer({ min: 33, max: 20_000 }).map(n => `{"name":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}`)
    const object = fc.dictionary(fc.oneof(fc.constantFrom('name', 'visibility', 'owner', 'tags', 'id', 'protected', 'min_ram', 'disk_format', 'container_format', 'os_glance_x', 'locations', ...PROTOTYPE_KEYS), fc.string()), fc.jsonValue(), { maxKeys: 6 })
    await fc.assert(fc.asyncProperty(fc.oneof(object.map(o => JSON.stringify(o)), fc.json(), deep, deepObject, fc.string()), async (text) => {
      const before = snapshot()
      const r = await raw('POST', '/v2/images', { ...OWNER, 'content-type': 'application/json' }, text)
      expect(r.status, r.body).toBeLessThan(500)
      if (r.status >= 400) expect(snapshot()).toBe(before)
      else expect(r.status).toBe(201)
    }), run)
    await expectAlive()
  })

  it('any JSON-patch document: no 5xx, and a refused patch changes nothing', async () => {
    const pointer = fc.oneof(
      fc.constantFrom('name', 'visibility', 'owner', 'protected', 'tags', 'min_ram', 'os_distro', 'locations', 'status', 'checksum', 'os_glance_x', ...PROTOTYPE_KEYS).map(k => `/${k}`),
      fc.constantFrom('/', '', 'name', '//x', '/a/b', '/a~2', '/~1x', '/locations/-', '/locations/0'),
      fc.string().map(s => `/${s}`)
    )
    const op = fc.record({ op: fc.oneof(fc.constantFrom('add', 'replace', 'remove', 'test', 'move'), fc.string()), path: pointer, value: fc.jsonValue() }, { requiredKeys: ['op', 'path'] })
    const oldOp = fc.tuple(fc.constantFrom('add', 'replace', 'remove'), pointer, fc.jsonValue()).map(([o, p, value]) => ({ [o]: p, value }))
    await fc.assert(fc.asyncProperty(
      fc.constantFrom('2.0', '2.1'), fc.oneof(fc.array(fc.oneof(op, oldOp), { maxLength: 4 }), fc.jsonValue()),
      async (dialect, doc) => {
        const before = snapshot()
        const r = await api.patch(imageId, doc, dialect, OWNER)
        expect(r.status, r.text).toBeLessThan(500)
        if (r.status >= 400) expect(snapshot()).toBe(before)
        // The fixture must stay shared and findable for the other properties.
        if (r.status === 200 && (r.json.visibility !== 'shared' || r.json.protected === true)) {
          expect((await api.patch(imageId, [{ op: 'replace', path: '/visibility', value: 'shared' }, { op: 'replace', path: '/protected', value: false }], '2.1', OWNER)).status).toBe(200)
        }
      }), run)
    await expectAlive()
  })

  it('removing an absent property named like an Object.prototype member is a 409 like any other', async () => {
    // A fresh image: the patch fuzzing may have given the shared one such properties.
    const imageId = (await api.create({ name: 'prototype-names' }, OWNER)).json.id as string
    for (const key of PROTOTYPE_KEYS) {
      const before = snapshot()
      const r = await api.patch(imageId, [{ op: 'remove', path: `/${key}` }], '2.1', OWNER)
      expect(r.status, key).toBe(409)
      expect(r.json.message).toContain(`Property ${key} does not exist.`)
      expect(snapshot()).toBe(before)
    }
    // And such a name is an ordinary property once set: stored, shown, removed.
    for (const key of PROTOTYPE_KEYS) {
      expect((await api.patch(imageId, [{ op: 'add', path: `/${key}`, value: 'v' }], '2.1', OWNER)).json[key]).toBe('v')
      expect(agent.agent.metadata.getImage(imageId)?.properties[key]).toBe('v')
      expect((await api.patch(imageId, [{ op: 'remove', path: `/${key}` }], '2.1', OWNER)).status).toBe(200)
      expect(Object.hasOwn(agent.agent.metadata.getImage(imageId)?.properties ?? {}, key)).toBe(false)
    }
    expect(({} as Record<string, unknown>).v).toBeUndefined()
  })

  it('any list filters: no 5xx, and a 200 is a page of images', async () => {
    const key = fc.oneof(fc.constantFrom('limit', 'marker', 'sort', 'sort_key', 'sort_dir', 'visibility', 'member_status', 'os_hidden',
      'name', 'id', 'status', 'size_min', 'size_max', 'created_at', 'updated_at', 'tag', 'protected', 'owner', 'container_format', 'os_distro', ...PROTOTYPE_KEYS), fc.string())
    const value = fc.oneof(fc.string(), fc.constantFrom('in:a,"b,c"', 'gte:2026-01-01T00:00:00Z', 'name:asc,size', '-1', '0', '99999999999999999999', 'true', 'all', imageId))
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(key, value), { maxLength: 5 }), async (pairs) => {
      const query = new URLSearchParams(pairs).toString()
      const r = await api.call('GET', `/v2/images?${query}`, { headers: OWNER })
      expect(r.status, `${query}: ${r.text}`).toBeLessThan(500)
      if (r.status === 200) expect(Array.isArray(r.json.images)).toBe(true)
    }), run)
    await expectAlive()
  })

  it('any Range header: no 5xx, and a 206 carries exactly the asked bytes', async () => {
    const n = fc.oneof(fc.nat({ max: 2000 }), fc.constantFrom(Number.MAX_SAFE_INTEGER, 2 ** 64))
    const range = fc.oneof(
      fc.tuple(fc.option(n, { nil: undefined }), fc.option(n, { nil: undefined })).map(([a, b]) => `bytes=${a ?? ''}-${b ?? ''}`),
      fc.tuple(n, n).map(([a, b]) => `bytes=${a}-${b},${b}-`),
      headerValue.map(s => `bytes=${s}`),
      headerValue
    )
    await fc.assert(fc.asyncProperty(range, async (header) => {
      const r = await api.download(imageId, { ...OWNER, range: header })
      expect(r.status, header).toBeLessThan(500)
      expect([200, 206, 400, 416]).toContain(r.status)
      if (r.status === 206) {
        const m = /^bytes (\d+)-(\d+)\/1000$/.exec(r.headers.get('content-range') ?? '')
        expect(m, header).not.toBeNull()
        expect(r.bytes.equals(DATA.subarray(Number(m?.[1]), Number(m?.[2]) + 1))).toBe(true)
      }
      if (r.status === 200) expect(r.bytes.equals(DATA)).toBe(true)
    }), run)
    await expectAlive()
  })

  it('any image or member id: no 5xx, and a refusal stores nothing', async () => {
    await fc.assert(fc.asyncProperty(
      anyText, anyText, fc.constantFrom('GET', 'DELETE', 'PATCH', 'PUT'), fc.constantFrom('', '/members', '/members/{m}', '/tags/{m}', '/file', '/actions/reactivate'),
      async (id, member, method, suffix) => {
        const before = snapshot()
        const target = `/v2/images/${encodeURIComponent(id)}${suffix.replace('{m}', encodeURIComponent(member))}`
        const r = await raw(method, target, { ...OWNER, 'content-type': 'application/openstack-images-v2.1-json-patch' }, method === 'PATCH' ? '[]' : undefined)
        expect(r.status, `${method} ${target}: ${r.body}`).toBeLessThan(500)
        if (r.status >= 400) expect(snapshot()).toBe(before)
      }), run)
    await expectAlive()
  })
})

describe('hardening found by fuzzing', () => {
  it('answers JSON nested thousands deep with 400, not a stack overflow', async () => {
    for (const text of [`${'['.repeat(100_000)}${']'.repeat(100_000)}`, `{"name":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`]) {
      const before = snapshot()
      const r = await raw('POST', '/v2/images', { ...OWNER, 'content-type': 'application/json', accept: 'application/json' }, text)
      expect(r.status).toBe(400)
      expect(JSON.parse(r.body).message).toContain('nested more than 32 levels')
      expect(snapshot()).toBe(before)
    }
    const deepImport = `{"method":{"name":"glance-direct","x":${'['.repeat(10_000)}${']'.repeat(10_000)}}}`
    expect((await raw('POST', `/v2/images/${imageId}/import`, { ...OWNER, 'content-type': 'application/json' }, deepImport)).status).toBe(400)
    await expectAlive()
  })

  it('serves an absolute-form request target as its path', async () => {
    const { host } = new URL(agent.url)
    const r = await raw('GET', `http://${host}/v2/images/${imageId}`, { ...OWNER, accept: 'application/json' })
    expect(r.status).toBe(200)
    expect(JSON.parse(r.body).id).toBe(imageId)
    expect((await raw('GET', 'http://elsewhere.example/v2.9/images?limit=1', OWNER)).status).toBe(200)
    expect((await raw('GET', 'http://elsewhere.example', OWNER)).status).toBe(300)
    expect((await raw('GET', 'ftp://elsewhere.example/v2/images', OWNER)).status).toBeLessThan(500)
  })
})
