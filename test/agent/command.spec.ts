import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { spawnAgent, tmpDir } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'

const run = promisify(execFile)
const BIN = fileURLToPath(new URL('../../packages/agent/bin/peerglance.js', import.meta.url))
const dirs: string[] = []
const agents: SpawnedAgent[] = []

afterEach(async () => {
  for (const agent of agents.splice(0)) await agent.kill('SIGKILL')
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
})

async function fails (args: string[]): Promise<{ code: number, stderr: string }> {
  try {
    await run(process.execPath, [BIN, ...args], { timeout: 20_000 })
  } catch (err) {
    const e = err as { code: number, stderr: string }
    return { code: e.code, stderr: e.stderr }
  }
  throw new Error(`peerglance ${args.join(' ')} succeeded`)
}

describe('the peerglance command', () => {
  it('refuses a bad flag or value, naming it, with a non-zero exit', async () => {
    let r = await fails(['agent', '--no-such-flag'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('--no-such-flag')
    r = await fails(['agent', '--api-listen', 'nowhere'])
    expect(r.stderr).toContain('--api-listen')
    r = await fails(['agent', '--log-level', 'loud'])
    expect(r.stderr).toContain('--log-level')
    const dir = await tmpDir(); dirs.push(dir)
    const config = join(dir, 'bad.yaml')
    await writeFile(config, 'chunks:\n  chunkSize: 12\n')
    r = await fails(['agent', '--config', config])
    expect(r.stderr).toContain('chunks.chunkSize')
    r = await fails(['frobnicate'])
    expect(r.stderr).toContain('frobnicate')
  })

  it('refuses a policy rule that does not parse and a policy file it cannot read, with exit code 2', async () => {
    const dir = await tmpDir(); dirs.push(dir)
    const policy = join(dir, 'policy.yaml')
    await writeFile(policy, 'publicize_image: "role:admin or"\n')
    const config = join(dir, 'config.yaml')
    await writeFile(config, `policy:\n  file: ${policy}\n`)
    let r = await fails(['agent', '--config', config, '--data-dir', join(dir, 'data')])
    expect(r).toMatchObject({ code: 2, stderr: 'peerglance: policy rule "publicize_image": cannot parse rule "role:admin or": unexpected end\n' })
    await writeFile(config, `policy:\n  file: ${join(dir, 'missing.yaml')}\n`)
    r = await fails(['agent', '--config', config, '--data-dir', join(dir, 'data')])
    expect(r).toMatchObject({ code: 2, stderr: `peerglance: cannot read policy file ${join(dir, 'missing.yaml')}: no such file\n` })
  })

  it('refuses noauth on a non-loopback address with exit code 2 unless allowRemote says so', async () => {
    const dir = await tmpDir(); dirs.push(dir)
    const r = await fails(['agent', '--data-dir', dir, '--api-listen', '0.0.0.0:0'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('api.listen: 0.0.0.0:0 is not a loopback address')
    expect(r.stderr).toContain('auth.noauth.allowRemote: true')
    expect(await readdir(dir)).toEqual([])
  })

  it('prints its usage with --help', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'agent', '--help'], { timeout: 20_000 })
    for (const flag of ['--config', '--data-dir', '--api-listen', '--log-level']) expect(stdout).toContain(flag)
  })

  it('stops cleanly on SIGTERM mid-upload, leaving the image queued and no chunk behind', async () => {
    const dataDir = await tmpDir(); dirs.push(dataDir)
    const agent = await spawnAgent({ dataDir, args: [] })
    agents.push(agent)
    const image = await (await fetch(`${agent.url}/v2/images`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ disk_format: 'raw', container_format: 'bare' })
    })).json() as { id: string }
    let sent = 0
    const body = new ReadableStream({
      async pull (controller) {
        // A slow client: the upload is still running when the agent is told to stop.
        if (sent >= 64 * 1024 * 1024) { controller.close(); return }
        await new Promise(resolve => setTimeout(resolve, 20))
        controller.enqueue(randomBytes(1024 * 1024))
        sent += 1024 * 1024
      }
    })
    const upload = fetch(`${agent.url}/v2/images/${image.id}/file`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body, duplex: 'half'
    } as RequestInit).then(r => r.status, () => 'connection closed')
    const deadline = Date.now() + 20_000
    while (sent < 8 * 1024 * 1024 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    expect(sent).toBeGreaterThanOrEqual(8 * 1024 * 1024)
    const code = await agent.kill('SIGTERM')
    expect(code).toBe(0)
    const outcome = await upload
    expect(outcome === 'connection closed' || outcome === 503).toBe(true)

    const again = await spawnAgent({ dataDir })
    agents.push(again)
    const shown = await (await fetch(`${again.url}/v2/images/${image.id}`)).json() as Record<string, unknown>
    expect(shown).toMatchObject({ status: 'queued', size: null, checksum: null })
    expect((await fetch(`${again.url}/v2/images/${image.id}/file`)).status).toBe(204)
    expect(await countFiles(join(dataDir, 'chunks'))).toBe(0)
    expect(await again.kill('SIGTERM')).toBe(0)
  })
})

async function countFiles (dir: string): Promise<number> {
  let n = 0
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) if (entry.isFile()) n++
  return n
}
