import { readFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import type { Socket } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { keystoneEnv, issueToken } from '../keystone/keystone.ts'
import type { Account } from '../keystone/keystone.ts'
import { openstackKeystoneCli } from '../clients/cli.ts'
import type { Cli } from '../clients/cli.ts'

const GL_HOME = process.env.GL_HOME ?? '/var/tmp/peerglance-glance'

export interface GlanceEnv {
  url: string
  keystoneUrl: string
  region: string
  storeDir: string
  accessLog: string
  pidFile: string
  account: { username: string, password: string, projectName: string, userDomainName: string, projectDomainName: string }
}

/** What scripts/glance.sh wrote: the upstream's URL, region, access log and service account. */
export function glanceEnv (): GlanceEnv {
  return JSON.parse(readFileSync(join(GL_HOME, 'env.json'), 'utf8')) as GlanceEnv
}

/** `openstack` as `account`, with the upstream Glance found in the catalog by its region. */
export function upstreamCli (account: Account, home: string): Cli {
  return openstackKeystoneCli({
    OS_AUTH_URL: keystoneEnv().url,
    OS_USERNAME: account.username,
    OS_PASSWORD: account.password,
    OS_PROJECT_NAME: account.projectName,
    OS_USER_DOMAIN_NAME: 'Default',
    OS_PROJECT_DOMAIN_NAME: 'Default',
    OS_REGION_NAME: glanceEnv().region
  }, home)
}

/** A request to the upstream Glance as `account`. */
export async function upstreamFetch (account: Account, path: string, init: RequestInit = {}): Promise<Response> {
  const { token } = await issueToken(account)
  const request = async (): Promise<Response> => await fetch(`${glanceEnv().url}${path}`, { ...init, headers: { ...init.headers as Record<string, string>, 'x-auth-token': token } })
  try {
    return await request()
  } catch (err) {
    // glance-api (eventlet) may close a kept-alive connection just as it is reused: the request
    // never reached it, so it is sent once more (bodies here are strings or buffers).
    if ((err as { cause?: { code?: string } }).cause?.code !== 'UND_ERR_SOCKET') throw err
    return await request()
  }
}

/** The upstream's service account, as Keystone helpers take it. */
export function glanceAccount (): Account {
  const a = glanceEnv().account
  return { username: a.username, password: a.password, projectName: a.projectName, projectId: '', userId: '' }
}

/** An agent config file with the upstream set (JSON is YAML); `extra` is merged into `upstream`. */
export async function upstreamConfig (dir: string, extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}): Promise<string> {
  const env = glanceEnv()
  const file = join(dir, `upstream-${Math.random().toString(36).slice(2)}.yaml`)
  await writeFile(file, JSON.stringify({
    ...top,
    upstream: {
      url: env.url,
      keystone: { url: env.keystoneUrl, username: env.account.username, password: env.account.password, projectName: 'service' },
      pollIntervalMs: 1000,
      ...extra
    }
  }))
  return file
}

/** Bytes the upstream sent for GET /v2/images/ID/file since `fromOffset` of its log (headers included, as it logs). */
export function fileBytesLogged (imageId: string, fromOffset: number): { requests: number, bytes: number } {
  const text = readFileSync(glanceEnv().accessLog, 'utf8').slice(fromOffset)
  let requests = 0
  let bytes = 0
  for (const m of text.matchAll(new RegExp(`"GET /v2/images/${imageId}/file HTTP/1\\.1" (\\d{3}) (\\d+)`, 'g'))) {
    requests++
    bytes += Number(m[2])
  }
  return { requests, bytes }
}

export function accessLogSize (): number {
  return readFileSync(glanceEnv().accessLog).byteLength
}

/**
 * A fresh application credential of the upstream's service account (it carries the account's
 * roles in its project), and a function that deletes it.
 */
export async function applicationCredential (): Promise<{ id: string, secret: string, remove: () => Promise<void> }> {
  const env = glanceEnv()
  const login = await fetch(`${env.keystoneUrl}/auth/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: env.account.username, domain: { name: 'Default' }, password: env.account.password } } }, scope: { project: { name: env.account.projectName, domain: { name: 'Default' } } } } })
  })
  const token = login.headers.get('x-subject-token') as string
  const userId = (await login.json() as { token: { user: { id: string } } }).token.user.id
  const res = await fetch(`${env.keystoneUrl}/users/${userId}/application_credentials`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-auth-token': token },
    body: JSON.stringify({ application_credential: { name: `peerglance-test-${Date.now()}-${Math.random().toString(36).slice(2)}` } })
  })
  if (res.status !== 201) throw new Error(`application credential: ${res.status} ${await res.text()}`)
  const { id, secret } = (await res.json() as { application_credential: { id: string, secret: string } }).application_credential
  return { id, secret, remove: async () => { await fetch(`${env.keystoneUrl}/users/${userId}/application_credentials/${id}`, { method: 'DELETE', headers: { 'x-auth-token': token } }) } }
}

/**
 * A TCP proxy on 127.0.0.1 in front of the upstream Glance, for agents to use as `upstream.url`:
 * `cut` makes the upstream unreachable for them alone (listener closed, connections dropped),
 * where stopping the shared Glance would also cut every other test run that uses it.
 */
export async function upstreamProxy (): Promise<{ url: string, cut: () => Promise<void> }> {
  const target = new URL(glanceEnv().url)
  const sockets = new Set<Socket>()
  const server = createServer(client => {
    const upstream = connect(Number(target.port), target.hostname)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => { client.destroy(); upstream.destroy() })
      s.on('close', () => { sockets.delete(s) })
    }
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    cut: async () => {
      const closed = new Promise<void>(resolve => server.close(() => { resolve() }))
      for (const s of sockets) s.destroy()
      await closed
    }
  }
}
