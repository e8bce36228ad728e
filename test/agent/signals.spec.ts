import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { freePort, tmpDir } from '@peerglance/testing'

// However an operator starts the agent, SIGTERM to what they started stops every agent it began,
// and no process is left holding a port.

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = promisify(execFile)
const started: Array<{ launcher: ChildProcess, dataDir: string }> = []

afterEach(async () => {
  for (const { launcher, dataDir } of started.splice(0)) {
    launcher.kill('SIGKILL')
    for (const pid of await agentPids(dataDir)) process.kill(pid, 'SIGKILL')
    await rm(dataDir, { recursive: true, force: true })
  }
})

/** Agent processes whose command line names this test's own data directory: only ones we started. */
async function agentPids (dataDir: string): Promise<number[]> {
  try {
    const { stdout } = await run('pgrep', ['-f', `bin/peerglance agent --data-dir ${dataDir}`])
    return stdout.split('\n').filter(s => s !== '').map(Number)
  } catch {
    return [] // pgrep exits 1 when nothing matches
  }
}

async function answers (port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/versions`, { signal: AbortSignal.timeout(1000) })).ok
  } catch {
    return false
  }
}

async function until (what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

async function launch (command: string, args: string[], dataDir: string): Promise<ChildProcess> {
  const launcher = spawn(command, args, { cwd: ROOT, stdio: 'ignore' })
  started.push({ launcher, dataDir })
  return launcher
}

async function expectAllGone (launcher: ChildProcess, dataDir: string, ports: number[]): Promise<void> {
  const pids = await agentPids(dataDir)
  expect(pids.length).toBe(ports.length)
  launcher.kill('SIGTERM')
  await until('every agent gone', async () => (await agentPids(dataDir)).length === 0, 15_000)
  for (const port of ports) expect(await answers(port)).toBe(false)
}

describe('SIGTERM to the command an operator ran', () => {
  it('npm start: stops the agent', async () => {
    const dataDir = await tmpDir(); const port = await freePort()
    const npm = await launch('npm', ['start', '--', '--data-dir', dataDir, '--api-listen', `127.0.0.1:${port}`], dataDir)
    await until('agent answers', async () => await answers(port))
    await expectAllGone(npm, dataDir, [port])
  })

  it('npx peerglance agent: stops the agent, though npx runs it under a shell that keeps the signal', async () => {
    const dataDir = await tmpDir(); const port = await freePort()
    const npx = await launch('npx', ['peerglance', 'agent', '--data-dir', dataDir, '--api-listen', `127.0.0.1:${port}`], dataDir)
    await until('agent answers', async () => await answers(port))
    await expectAllGone(npx, dataDir, [port])
  })

  it('scripts/mesh.sh: stops all of its agents', async () => {
    const dataDir = await tmpDir(); const port = await freePort()
    const ports = [port, port + 1, port + 2]
    const mesh = await launch('bash', ['scripts/mesh.sh', '3', String(port), dataDir], dataDir)
    for (const p of ports) await until(`agent on ${p} answers`, async () => await answers(p))
    const pids = await agentPids(dataDir)
    expect(pids.length).toBe(3)
    mesh.kill('SIGTERM')
    await until('every agent gone', async () => (await agentPids(dataDir)).length === 0, 15_000)
    for (const p of ports) expect(await answers(p)).toBe(false)
  })
})
