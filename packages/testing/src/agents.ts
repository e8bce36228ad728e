import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { createAgent } from '@peerglance/agent'
import type { Agent } from '@peerglance/agent'
import { loadConfig } from '@peerglance/config'
import type { ConfigOverrides } from '@peerglance/config'

const BIN = fileURLToPath(new URL('../../agent/bin/peerglance.js', import.meta.url))

export async function tmpDir (prefix = 'peerglance-test-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

export interface TestAgent extends AsyncDisposable {
  agent: Agent
  url: string
  dataDir: string
  stop: () => Promise<void>
}

/** A real agent in this process: real LevelDB, real chunk files, real HTTP on a free loopback port. */
export async function startAgent (opts: { dataDir?: string, config?: ConfigOverrides, keepData?: boolean } = {}): Promise<TestAgent> {
  const dataDir = opts.dataDir ?? await tmpDir()
  const config = loadConfig({ overrides: { log: { level: 'silent' }, ...opts.config, dataDir, api: { listen: '127.0.0.1:0', ...opts.config?.api } } })
  const agent = await createAgent(config)
  await agent.start()
  const stop = async (): Promise<void> => {
    await agent.stop()
    if (opts.keepData !== true && opts.dataDir == null) await rm(dataDir, { recursive: true, force: true })
  }
  return { agent, url: agent.url, dataDir, stop, [Symbol.asyncDispose]: stop }
}

export interface SpawnedAgent extends AsyncDisposable {
  process: ChildProcess
  url: string
  dataDir: string
  /** Every log line the agent printed, parsed. */
  logs: Array<Record<string, unknown>>
  /** Sends the signal and waits for the process to exit; resolves with its exit code (null if killed). */
  kill: (signal?: NodeJS.Signals) => Promise<number | null>
}

/**
 * The `peerglance agent` command in a child process, as an operator runs it: this checkout's, or
 * another install's when `bin` names its Node and its `peerglance` script.
 */
export async function spawnAgent (opts: { dataDir: string, args?: string[], timeoutMs?: number, apiListen?: string, prefix?: string[], bin?: [node: string, peerglance: string] }): Promise<SpawnedAgent> {
  // `prefix` runs the agent through another command that execs it (`ip netns exec NS`), so the child is still the agent.
  const command = [...opts.prefix ?? [], ...opts.bin ?? [process.execPath, BIN], 'agent', '--data-dir', opts.dataDir, '--api-listen', opts.apiListen ?? '127.0.0.1:0', '--log-level', 'info', ...opts.args ?? []]
  const child = spawn(command[0], command.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const logs: Array<Record<string, unknown>> = []
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => { resolve(code) }))
  // The agent logs why it stopped on stdout (pino), not stderr: both go into the error.
  const why = (): string => [stderr.trim(), ...logs.slice(-3).map(entry => JSON.stringify(entry))].filter(s => s !== '').join('\n')
  const url = await new Promise<string>((resolve, reject) => {
    // An agent that did not start in time is killed: nobody else holds its pid to stop it.
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`agent did not start in time: ${why()}`)) }, opts.timeoutMs ?? 20_000)
    createInterface({ input: child.stdout! }).on('line', line => {
      let entry: Record<string, unknown>
      try { entry = JSON.parse(line) } catch { return }
      logs.push(entry)
      if (entry.msg === 'agent started') { clearTimeout(timer); resolve(entry.url as string) }
    })
    void exited.then(code => { clearTimeout(timer); reject(new Error(`agent exited with ${code} before starting: ${why()}`)) })
  })
  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (child.exitCode == null && child.signalCode == null) child.kill(signal)
    return await exited
  }
  return { process: child, url, dataDir: opts.dataDir, logs, kill, [Symbol.asyncDispose]: async () => { await kill('SIGKILL') } }
}
