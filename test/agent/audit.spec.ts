import { randomBytes } from 'node:crypto'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnAgent, tmpDir, type SpawnedAgent } from '@peerglance/testing'

let dir: string
let agent: SpawnedAgent
let auditFile: string

beforeAll(async () => {
  dir = await tmpDir('peerglance-audit-')
  auditFile = join(dir, 'log', 'audit.log')
  const config = join(dir, 'peerglance.yaml')
  await writeFile(config, `audit:\n  file: ${auditFile}\n`)
  agent = await spawnAgent({ dataDir: join(dir, 'data'), args: ['--config', config] })
})

afterAll(async () => {
  await agent?.kill()
  await rm(dir, { recursive: true, force: true })
})

const owner = { 'x-project-id': 'project-a', 'x-user-id': 'alice', 'x-roles': 'member,reader', 'x-auth-token': 'secret-token-must-not-leak' }

async function call (method: string, path: string, init: { headers?: Record<string, string>, body?: unknown, raw?: Uint8Array, type?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { ...owner, ...init.headers }
  let body: RequestInit['body']
  if (init.body !== undefined) {
    body = JSON.stringify(init.body)
    headers['content-type'] = init.type ?? 'application/json'
  } else if (init.raw !== undefined) {
    body = init.raw
    headers['content-type'] = 'application/octet-stream'
  }
  return await fetch(`${agent.url}${path}`, { method, headers, body })
}

async function auditLines (file: string, count: number): Promise<Array<Record<string, any>>> {
  // The writer is asynchronous: wait (bounded) until the lines are on disk.
  for (let i = 0; i < 100; i++) {
    const text = await readFile(file, 'utf8').catch(() => '')
    const lines = text.split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, any>)
    if (lines.length >= count) return lines
    await sleep(50)
  }
  throw new Error(`fewer than ${count} audit lines in ${file}`)
}

describe('audit log', () => {
  it('writes one JSON line per image action with who, what, outcome and bytes, never the token; reopens on SIGHUP', async () => {
    const data = randomBytes(300_000)
    const created = await (await call('POST', '/v2/images', { body: { name: 'audited', disk_format: 'raw', container_format: 'bare' } })).json() as { id: string }
    const id = created.id
    expect((await call('PUT', `/v2/images/${id}/file`, { raw: data })).status).toBe(204)
    const download = await call('GET', `/v2/images/${id}/file`, { headers: { 'x-openstack-request-id': 'req-audit-download' } })
    expect(Buffer.from(await download.arrayBuffer()).equals(data)).toBe(true)
    expect((await call('PATCH', `/v2/images/${id}`, { body: [{ op: 'replace', path: '/name', value: 'renamed' }], type: 'application/openstack-images-v2.1-json-patch' })).status).toBe(200)
    expect((await call('POST', `/v2/images/${id}/members`, { body: { member: 'project-b' } })).status).toBe(200)
    // A member may not publicize: the policy refuses, and the refusal is audited.
    expect((await call('PATCH', `/v2/images/${id}`, { body: [{ op: 'replace', path: '/visibility', value: 'public' }], type: 'application/openstack-images-v2.1-json-patch' })).status).toBe(403)
    const admin = { 'x-project-id': 'project-admin', 'x-user-id': 'root', 'x-roles': 'admin' }
    expect((await call('POST', `/v2/images/${id}/actions/deactivate`, { headers: admin })).status).toBe(204)
    expect((await call('POST', `/v2/images/${id}/actions/reactivate`, { headers: admin })).status).toBe(204)
    // Reads of metadata are not actions.
    expect((await call('GET', `/v2/images/${id}`)).status).toBe(200)

    const lines = await auditLines(auditFile, 8)
    expect(lines.map(l => [l.action, l.outcome, l.status])).toEqual([
      ['create', 'success', 201],
      ['upload', 'success', 204],
      ['download', 'success', 200],
      ['update', 'success', 200],
      ['member-add', 'success', 200],
      ['update', 'refused', 403],
      ['deactivate', 'success', 204],
      ['reactivate', 'success', 204]
    ])
    for (const line of lines.slice(0, 6)) expect(line).toMatchObject({ userId: 'alice', projectId: 'project-a', imageId: id, remoteAddress: '127.0.0.1' })
    expect(lines[6]).toMatchObject({ userId: 'root', projectId: 'project-admin' })
    expect(lines[1].bytes).toBe(data.length)
    expect(lines[2]).toMatchObject({ bytes: data.length, requestId: 'req-audit-download' })
    expect(lines[0].bytes).toBe(0)
    for (const line of lines) {
      expect(Date.parse(line.time)).toBeGreaterThan(Date.now() - 120_000)
      expect(line.requestId).toMatch(/^req-/)
    }
    expect(await readFile(auditFile, 'utf8')).not.toContain('secret-token')

    // logrotate: move the file away, SIGHUP, and the next line goes to a new file by the old name.
    const rotated = `${auditFile}.1`
    await rename(auditFile, rotated)
    agent.process.kill('SIGHUP')
    await sleep(200)
    expect((await call('DELETE', `/v2/images/${id}`)).status).toBe(204)
    const fresh = await auditLines(auditFile, 1)
    expect(fresh).toEqual([expect.objectContaining({ action: 'delete', outcome: 'success', imageId: id, userId: 'alice' })])
    expect(await auditLines(rotated, 8)).toHaveLength(8)
  })
})
