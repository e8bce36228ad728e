import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { spawnAgent, tmpDir } from './agents.ts'
import type { SpawnedAgent } from './agents.ts'

export interface WaitForOptions {
  /** Gives up after this long (default 10 s) and throws the last failure. */
  timeoutMs?: number
  /** Pause between attempts (default 50 ms). */
  intervalMs?: number
  /** What is awaited, for the error message. */
  what?: string
}

/**
 * Calls `fn` until it returns something other than false, null or undefined without throwing,
 * and returns that. An `expect` inside `fn` is fine: its failure is retried, and the last one is
 * what the timeout error carries.
 */
export async function waitFor<T> (fn: () => T | Promise<T>, opts: WaitForOptions = {}): Promise<Exclude<T, false | null | undefined>> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await fn()
      if (value !== false && value != null) return value as Exclude<T, false | null | undefined>
      last = undefined
    } catch (err) {
      last = err
    }
    if (Date.now() >= deadline) {
      const what = opts.what ?? 'condition'
      const why = last instanceof Error ? `: ${last.message}` : ''
      throw new Error(`${what} not met within ${timeoutMs} ms${why}`, { cause: last })
    }
    await sleep(opts.intervalMs ?? 50)
  }
}

/** What `GET /peerglance/v1/status` answers. */
export interface AgentStatusDocument {
  peerId: string
  multiaddrs: string[]
  peers: string[]
  /** The root of the agent's replicated state: equal on two agents exactly when they hold the same records. */
  stateRoot: string | null
  images: Array<{ id: string, name: string | null, status: string, size: number | null, chunks: number | null, localShare: number | null }>
}

export async function agentStatus (url: string): Promise<AgentStatusDocument> {
  const res = await fetch(new URL('/peerglance/v1/status', url))
  if (res.status !== 200) throw new Error(`GET /peerglance/v1/status: ${res.status} ${await res.text()}`)
  return await res.json() as AgentStatusDocument
}

/** The agent's first libp2p multiaddr (with `/p2p/<id>`), from its 'mesh started' log line. */
export function multiaddrOf (agent: SpawnedAgent): string {
  const line = agent.logs.find(l => l.msg === 'mesh started')
  const addrs = line?.multiaddrs as string[] | undefined
  if (addrs == null || addrs.length === 0) throw new Error('the agent logged no multiaddrs')
  return addrs[0]
}

/** The agent's peer id, from its 'mesh started' log line. */
export function peerIdOf (agent: SpawnedAgent): string {
  const line = agent.logs.find(l => l.msg === 'mesh started')
  if (typeof line?.peer !== 'string') throw new Error('the agent logged no peer id')
  return line.peer
}

/** Resolves once every agent has an open connection to every other one. */
export async function waitConnected (agents: SpawnedAgent[], timeoutMs = 10_000): Promise<void> {
  const ids = agents.map(peerIdOf)
  await waitFor(async () => {
    const statuses = await Promise.all(agents.map(async a => await agentStatus(a.url)))
    return statuses.every((s, i) => ids.every((id, j) => i === j || s.peers.includes(id)))
  }, { timeoutMs, what: `${agents.length} agents connected to each other` })
}

export interface TestMesh extends AsyncDisposable {
  /** Every agent started, in order; the first is the one the others bootstrap to. */
  agents: SpawnedAgent[]
  /** The directory holding every agent's data dir. */
  root: string
  /** The first agent's multiaddr. */
  seed: string
  /**
   * Starts one more agent; by default in a fresh data dir under `root`, bootstrapping to the
   * first agent. It is killed by `close()` like the others.
   */
  add: (opts?: { dataDir?: string, args?: string[], bootstrap?: boolean }) => Promise<SpawnedAgent>
  /** SIGKILLs every agent still running and removes `root`. */
  close: () => Promise<void>
}

export interface MeshOfOptions {
  /** Flags for every agent. */
  args?: string[]
  /** Flags for agent `i` only (0 is the first). */
  argsOf?: (i: number) => string[]
  /** Wait until every agent is connected to every other (default), or not at all. */
  connect?: 'all' | 'none'
  timeoutMs?: number
}

/**
 * `n` real `peerglance agent` processes on 127.0.0.1: the first starts alone, the others with
 * `--bootstrap <first>`, each in its own data dir under one temp directory.
 */
export async function meshOf (n: number, opts: MeshOfOptions = {}): Promise<TestMesh> {
  const root = await tmpDir('peerglance-mesh-')
  const agents: SpawnedAgent[] = []
  let seed = ''
  let count = 0
  const close = async (): Promise<void> => {
    await Promise.all(agents.map(async a => await a.kill('SIGKILL')))
    await rm(root, { recursive: true, force: true })
  }
  const add: TestMesh['add'] = async (more = {}) => {
    const i = count++
    const dataDir = more.dataDir ?? join(root, `agent-${i}`)
    await mkdir(dataDir, { recursive: true })
    const bootstrap = more.bootstrap !== false && seed !== '' ? ['--bootstrap', seed] : []
    const agent = await spawnAgent({ dataDir, args: [...opts.args ?? [], ...bootstrap, ...more.args ?? []], timeoutMs: opts.timeoutMs ?? 30_000 })
    agents.push(agent)
    return agent
  }
  try {
    if (n > 0) {
      const first = await add({ args: opts.argsOf?.(0) })
      seed = multiaddrOf(first)
      await Promise.all(Array.from({ length: n - 1 }, async (_, i) => await add({ args: opts.argsOf?.(i + 1) })))
      // Order by index, whatever order they started in.
      agents.sort((a, b) => a.dataDir.localeCompare(b.dataDir, 'en', { numeric: true }))
      if (opts.connect !== 'none' && n > 1) await waitConnected(agents, opts.timeoutMs ?? 15_000)
    }
  } catch (err) {
    await close()
    throw err
  }
  return { agents, root, get seed () { return seed }, add, close, [Symbol.asyncDispose]: close }
}
