import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '@peerglance/testing'

const SCRIPT = fileURLToPath(new URL('../../scripts/keystone.sh', import.meta.url))
const KS_HOME = process.env.KS_HOME ?? '/var/tmp/peerglance-keystone'

export interface Account { username: string, password: string, projectName: string, projectId: string, userId: string }
export interface KeystoneEnv {
  url: string
  region: string
  accounts: Record<'admin' | 'peerglance' | 'nova' | 'alpha-member' | 'alpha-reader' | 'beta-member' | 'beta-reader', Account>
  projects: Record<string, string>
}

/** What scripts/keystone.sh wrote: the URL and every test account. */
export function keystoneEnv (): KeystoneEnv {
  return JSON.parse(readFileSync(join(KS_HOME, 'env.json'), 'utf8')) as KeystoneEnv
}

/** A project-scoped token for the account, from the Keystone at `url`. */
export async function issueToken (account: Account, url = keystoneEnv().url): Promise<{ token: string, expiresAt: string }> {
  const res = await fetch(`${url}/auth/tokens?nocatalog`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      auth: {
        identity: { methods: ['password'], password: { user: { name: account.username, domain: { name: 'Default' }, password: account.password } } },
        scope: { project: { name: account.projectName, domain: { name: 'Default' } } }
      }
    })
  })
  if (res.status !== 201) throw new Error(`token for ${account.username}: ${res.status} ${await res.text()}`)
  const body = await res.json() as { token: { expires_at: string } }
  return { token: res.headers.get('x-subject-token') as string, expiresAt: body.token.expires_at }
}

async function admin (method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<Response> {
  const env = keystoneEnv()
  const { token } = await issueToken(env.accounts.admin)
  return await fetch(`${env.url}${path}`, {
    method,
    headers: { 'x-auth-token': token, 'content-type': 'application/json', ...extra },
    body: body == null ? undefined : JSON.stringify(body)
  })
}

/** Revokes a token, as `openstack token revoke` does. */
export async function revokeToken (token: string): Promise<void> {
  const res = await admin('DELETE', '/auth/tokens', undefined, { 'x-subject-token': token })
  if (res.status !== 204) throw new Error(`revoke: ${res.status} ${await res.text()}`)
}

/**
 * Points the catalog's image service (public, RegionOne) at `url`, creating the service the first
 * time: what an operator does so `openstack image` finds the agent.
 */
export async function setImageEndpoint (url: string): Promise<void> {
  const env = keystoneEnv()
  const services = await (await admin('GET', '/services?type=image')).json() as { services: Array<{ id: string }> }
  let serviceId = services.services[0]?.id
  if (serviceId == null) {
    const created = await (await admin('POST', '/services', { service: { type: 'image', name: 'glance', enabled: true } })).json() as { service: { id: string } }
    serviceId = created.service.id
  }
  // Only this region's: the test upstream Glance (scripts/glance.sh) has its own region.
  const endpoints = await (await admin('GET', `/endpoints?service_id=${serviceId}&region_id=${env.region}`)).json() as { endpoints: Array<{ id: string }> }
  for (const e of endpoints.endpoints) await admin('DELETE', `/endpoints/${e.id}`)
  const res = await admin('POST', '/endpoints', { endpoint: { service_id: serviceId, interface: 'public', region_id: env.region, url, enabled: true } })
  if (res.status !== 201) throw new Error(`endpoint: ${res.status} ${await res.text()}`)
}

export interface ExtraKeystone {
  url: string
  stop: () => Promise<void>
  start: () => Promise<void>
}

/**
 * One more Keystone over the same database and keys (`keystone.sh serve`), on its own port, with
 * `conf` layered over the main config: tokens it issues are valid everywhere, and a test may stop
 * it without disturbing the others.
 */
export async function extraKeystone (dir: string, conf: string): Promise<ExtraKeystone> {
  const port = await freePort()
  const confFile = join(dir, `keystone-${port}.conf`)
  await writeFile(confFile, conf)
  const url = `http://127.0.0.1:${port}/v3`
  let child: ReturnType<typeof spawn> | undefined
  let exited: Promise<void> = Promise.resolve()
  const start = async (): Promise<void> => {
    const c = spawn('bash', [SCRIPT, 'serve', String(port), confFile], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    c.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
    child = c
    exited = new Promise(resolve => c.once('exit', () => { resolve() }))
    const deadline = Date.now() + 60_000
    for (;;) {
      if (c.exitCode != null) throw new Error(`keystone on ${port} exited: ${stderr}`)
      try {
        if ((await fetch(url, { signal: AbortSignal.timeout(1000) })).ok) return
      } catch {}
      if (Date.now() > deadline) throw new Error(`keystone on ${port} did not start: ${stderr}`)
      await sleep(200)
    }
  }
  const stop = async (): Promise<void> => {
    if (child != null && child.exitCode == null && child.signalCode == null) child.kill('SIGTERM')
    await exited
    child = undefined
  }
  await start()
  return { url, start, stop }
}

export { freePort }

/** Registers `url` as the public endpoint of a service of this type in this region (a fresh type per test keeps tests apart). */
export async function registerService (type: string, url: string): Promise<void> {
  const env = keystoneEnv()
  const created = await (await admin('POST', '/services', { service: { type, name: type, enabled: true } })).json() as { service: { id: string } }
  const res = await admin('POST', '/endpoints', { endpoint: { service_id: created.service.id, interface: 'public', region_id: env.region, url, enabled: true } })
  if (res.status !== 201) throw new Error(`endpoint: ${res.status} ${await res.text()}`)
}

/** Removes every service of this type and its endpoints. */
export async function removeService (type: string): Promise<void> {
  const services = await (await admin('GET', `/services?type=${encodeURIComponent(type)}`)).json() as { services: Array<{ id: string }> }
  for (const service of services.services) {
    const endpoints = await (await admin('GET', `/endpoints?service_id=${service.id}`)).json() as { endpoints: Array<{ id: string }> }
    for (const e of endpoints.endpoints) await admin('DELETE', `/endpoints/${e.id}`)
    await admin('DELETE', `/services/${service.id}`)
  }
}
