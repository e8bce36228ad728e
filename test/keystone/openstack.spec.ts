import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnAgent, tmpDir, type SpawnedAgent } from '@peerglance/testing'
import { openstackKeystoneCli, type Cli } from '../clients/cli.ts'
import { keystoneEnv, setImageEndpoint, type Account, type KeystoneEnv } from './keystone.ts'

// `openstack image …` as a cloud user runs it: password auth with Keystone, the image endpoint
// from the catalog, HTTPS to the agent with a certificate made here.
let env: KeystoneEnv
let dir: string
let agent: SpawnedAgent
let caFile: string

beforeAll(async () => {
  env = keystoneEnv()
  dir = await tmpDir('peerglance-openstack-ks-')
  caFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', caFile], { stdio: 'ignore' })
  const a = env.accounts.peerglance
  const config = join(dir, 'peerglance.yaml')
  await writeFile(config, [
    'api:',
    '  tls:',
    `    cert: ${caFile}`,
    `    key: ${keyFile}`,
    'auth:',
    '  mode: keystone',
    '  keystone:',
    `    url: ${env.url}`,
    `    username: ${a.username}`,
    `    password: ${a.password}`,
    `    projectName: ${a.projectName}`,
    ''
  ].join('\n'))
  agent = await spawnAgent({ dataDir: join(dir, 'data'), args: ['--config', config] })
  expect(agent.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
  await setImageEndpoint(agent.url)
})

afterAll(async () => {
  await agent?.kill()
  await rm(dir, { recursive: true, force: true })
})

function openstack (account: Account, opts: { cacert?: boolean } = {}): Cli {
  const cli = openstackKeystoneCli({
    OS_AUTH_URL: env.url,
    OS_USERNAME: account.username,
    OS_PASSWORD: account.password,
    OS_PROJECT_NAME: account.projectName,
    OS_USER_DOMAIN_NAME: 'Default',
    OS_PROJECT_DOMAIN_NAME: 'Default',
    OS_REGION_NAME: env.region
  }, dir)
  if (opts.cacert === false) return cli
  return {
    run: async (args, o) => await cli.run(['--os-cacert', caFile, ...args], o),
    ok: async (args, o) => await cli.ok(['--os-cacert', caFile, ...args], o)
  }
}

describe('openstack image with Keystone password auth over HTTPS', () => {
  it('creates, lists, shows, saves and deletes an image as a project member; other projects see nothing', async () => {
    const member = env.accounts['alpha-member']
    const cli = openstack(member)
    const data = randomBytes(3 * 1024 * 1024 + 17)
    const file = join(dir, 'image.raw')
    await writeFile(file, data)

    const created = JSON.parse(await cli.ok(['image', 'create', '--disk-format', 'raw', '--container-format', 'bare', '--file', file, '-f', 'json', 'ks-e2e'])) as { id: string }
    const shown = JSON.parse(await cli.ok(['image', 'show', '-f', 'json', created.id])) as Record<string, unknown>
    expect(shown).toMatchObject({ name: 'ks-e2e', status: 'active', owner: member.projectId, visibility: 'shared', size: data.length })
    expect(shown.checksum).toBe(createHash('md5').update(data).digest('hex'))
    const listed = JSON.parse(await cli.ok(['image', 'list', '-f', 'json'])) as Array<{ ID: string }>
    expect(listed.map(i => i.ID)).toContain(created.id)

    const out = join(dir, 'saved.raw')
    await cli.ok(['image', 'save', '--file', out, created.id])
    expect((await readFile(out)).equals(data)).toBe(true)

    // Another project's member neither sees nor deletes it.
    const beta = openstack(env.accounts['beta-member'])
    const betaList = JSON.parse(await beta.ok(['image', 'list', '-f', 'json'])) as Array<{ ID: string }>
    expect(betaList.map(i => i.ID)).not.toContain(created.id)
    const betaShow = await beta.run(['image', 'show', created.id])
    expect(betaShow.code).not.toBe(0)
    expect(betaShow.stderr).toMatch(/No Image found|Could not find/i)
    expect((await beta.run(['image', 'delete', created.id])).code).not.toBe(0)

    await cli.ok(['image', 'delete', created.id])
    const gone = await cli.run(['image', 'show', created.id])
    expect(gone.code).not.toBe(0)

    // The agent logged its Keystone work, but no password and no token (Fernet tokens start gAAAAA).
    const logs = JSON.stringify(agent.logs)
    expect(logs).toContain('got the agent\'s keystone token')
    expect(logs).not.toContain(env.accounts.peerglance.password)
    expect(logs).not.toContain(member.password)
    expect(logs).not.toMatch(/gAAAAA/)
  })

  it('fails without the CA: the agent really serves its own certificate', async () => {
    const result = await openstack(env.accounts['alpha-reader'], { cacert: false }).run(['image', 'list'])
    expect(result.code).not.toBe(0)
    // The SDK reports the failed TLS handshake as an endpoint it could not contact.
    expect(result.stderr).toMatch(/CERTIFICATE_VERIFY_FAILED|Failed to contact the endpoint at https:\/\/127\.0\.0\.1/)
  })
})
