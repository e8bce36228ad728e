import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { spawnAgent, tmpDir } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'

// The release an operator copies to a hypervisor: packed by scripts/pack.sh, unpacked, installed
// with production dependencies only by the machine's own npm and Node (not the Node 24 this suite
// runs on), then started as the systemd unit starts it.

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = promisify(execFile)
const cleanup: Array<() => Promise<unknown>> = []
afterAll(async () => { for (const step of cleanup.reverse()) await step() })

/** The environment an operator's shell has: no npm script variables, no project Node on the PATH. */
function operatorEnv (): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')))
  env.PATH = (process.env.PATH ?? '').split(delimiter).filter(dir => !dir.includes('node_modules')).join(delimiter)
  return env
}

describe('the release tarball', () => {
  it('installs with `npm ci --omit=dev` without a warning, holds no tests or dev tools, and serves Glance', async () => {
    const dir = await tmpDir()
    cleanup.push(async () => await rm(dir, { recursive: true, force: true }))
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }

    const tarball = (await run('bash', [join(ROOT, 'scripts/pack.sh'), dir])).stdout.trim()
    expect(tarball).toBe(join(dir, `peerglance-${version}.tgz`))
    const files = (await run('tar', ['-tzf', tarball])).stdout.split('\n').filter(f => f !== '')
    expect(files.every(f => f.startsWith(`peerglance-${version}/`))).toBe(true)
    expect(files).toContain(`peerglance-${version}/scripts/install-agent.sh`)
    expect(files).toContain(`peerglance-${version}/config/peerglance.service`)
    expect(files.filter(f => /\/test\/|\.spec\.ts$|\/bench\/|node_modules/.test(f))).toEqual([])

    await run('tar', ['-C', dir, '-xzf', tarball])
    const release = join(dir, `peerglance-${version}`)
    const env = operatorEnv()
    const machineNode = (await run('node', ['--version'], { env })).stdout.trim()
    const install = await run('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: release, env, timeout: 180_000 })
    expect({ machineNode, warnings: install.stderr.split('\n').filter(line => /warn/i.test(line)) }).toEqual({ machineNode, warnings: [] })
    for (const devTool of ['vitest', 'typescript', 'fast-check', 'playwright-core']) {
      expect(existsSync(join(release, 'node_modules', devTool)), devTool).toBe(false)
    }

    const dataDir = join(dir, 'data')
    const agent: SpawnedAgent = await spawnAgent({ dataDir, bin: [join(release, 'node_modules/.bin/node'), join(release, 'node_modules/.bin/peerglance')] })
    cleanup.push(async () => await agent.kill('SIGKILL'))
    const versions = await fetch(`${agent.url}/versions`)
    expect(versions.status).toBe(200)
    expect(((await versions.json()) as { versions: Array<{ status: string }> }).versions.some(v => v.status === 'CURRENT')).toBe(true)
    const created = await fetch(`${agent.url}/v2/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'from-the-release', disk_format: 'raw', container_format: 'bare' }) })
    expect(created.status).toBe(201)
    expect(await agent.kill('SIGTERM')).toBe(0)
  }, 240_000)
})
