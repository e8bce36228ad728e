// Reading through to the cloud's existing Glance (issue 11): BENCH_AGENTS agents (default 8) whose
// `upstream` is the Glance of scripts/glance.sh (Debian's glance-api behind scripts/keystone.sh,
// started here if down), one mesh; an image of BENCH_SIZE_MIB (default 64) uploaded upstream, then
// downloaded by every agent AT ONCE. Reported: the bytes the upstream sent for it (its access log,
// headers included) against the image size (target <= 1.1), the wall time until the last agent
// had it whole, and the same 8 clients reading straight from the upstream at once (the baseline:
// what the central Glance sends without the mesh). Every download is checked byte-exact (sha512).
//
//   node scripts/bench/upstream.ts
//   BENCH_AGENTS=8 BENCH_SIZE_MIB=256 node scripts/bench/upstream.ts
import { createHash, randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddrOf, waitConnected, waitFor } from '@peerglance/testing'
import { GiB, MiB, envInt, fmt, log, mdTable, printHeader, processCpu, runBench, startAgent, workDir } from './lib.ts'
import type { BenchAgent } from './lib.ts'

const GL_HOME = process.env.GL_HOME ?? '/var/tmp/peerglance-glance'

interface GlanceEnv { url: string, keystoneUrl: string, accessLog: string, account: { username: string, password: string } }

async function token (env: GlanceEnv): Promise<string> {
  const res = await fetch(`${env.keystoneUrl}/auth/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: env.account.username, domain: { name: 'Default' }, password: env.account.password } } }, scope: { project: { name: 'service', domain: { name: 'Default' } } } } })
  })
  return res.headers.get('x-subject-token') as string
}

/** Bytes the upstream logged for GET /v2/images/ID/file after `from` (headers included), and in how many requests. */
function loggedRequests (env: GlanceEnv, id: string, from: number): { bytes: number, requests: number } {
  const text = readFileSync(env.accessLog, 'utf8').slice(from)
  let bytes = 0
  let requests = 0
  for (const m of text.matchAll(new RegExp(`"GET /v2/images/${id}/file HTTP/1\\.1" \\d{3} (\\d+)`, 'g'))) {
    bytes += Number(m[1])
    requests++
  }
  return { bytes, requests }
}

function logged (env: GlanceEnv, id: string, from: number): number {
  return loggedRequests(env, id, from).bytes
}

async function sha512Of (url: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(url, { headers })
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`)
  const hash = createHash('sha512')
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(part)
  return hash.digest('hex')
}

await runBench(async cleanup => {
  const agents = envInt('BENCH_AGENTS', 8)
  const size = envInt('BENCH_SIZE_MIB', 64) * MiB
  printHeader('Reading through to an existing Glance', { agents, 'image MiB': size / MiB })
  execFileSync('bash', ['scripts/glance.sh', 'start'], { stdio: ['ignore', 'ignore', 'inherit'] })
  const env = JSON.parse(readFileSync(join(GL_HOME, 'env.json'), 'utf8')) as GlanceEnv
  const dir = await workDir(cleanup, 'upstream')
  const config = join(dir, 'upstream.yaml')
  await writeFile(config, JSON.stringify({ upstream: { url: env.url, keystone: { url: env.keystoneUrl, username: env.account.username, password: env.account.password }, pollIntervalMs: 2000 } }))

  const auth = { 'x-auth-token': await token(env) }
  const data = randomBytes(size)
  const sha512 = createHash('sha512').update(data).digest('hex')
  const created = await (await fetch(`${env.url}/v2/images`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bench-upstream', disk_format: 'raw', container_format: 'bare' }) })).json() as { id: string }
  cleanup.add(async () => { await fetch(`${env.url}/v2/images/${created.id}`, { method: 'DELETE', headers: auth }) })
  await fetch(`${env.url}/v2/images/${created.id}/file`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: data })

  log(`starting ${agents} agents`)
  const first = await startAgent(cleanup, join(dir, 'agent-0'), ['--config', config])
  const rest: BenchAgent[] = []
  for (let i = 1; i < agents; i += 4) {
    rest.push(...await Promise.all(Array.from({ length: Math.min(4, agents - i) }, async (_, j) =>
      await startAgent(cleanup, join(dir, `agent-${i + j}`), ['--config', config, '--bootstrap', multiaddrOf(first.agent)]))))
  }
  const all = [first, ...rest]
  await waitConnected(all.map(a => a.agent), 60_000)
  for (const a of all) {
    await waitFor(async () => ((await (await fetch(`${a.url}/v2/images/${created.id}`)).json()) as { status?: string }).status === 'active', { timeoutMs: 60_000 })
  }

  // Baseline: the same number of clients straight from the upstream, at once.
  let from = statSync(env.accessLog).size
  let started = Date.now()
  const direct = await Promise.all(all.map(async () => await sha512Of(`${env.url}/v2/images/${created.id}/file`, auth)))
  const directMs = Date.now() - started
  // glance-api logs a request once it is done with it, which can be after the client had the last
  // byte: wait for all of them, so none is counted in the next phase.
  await waitFor(async () => loggedRequests(env, created.id, from).requests >= all.length, { timeoutMs: 10_000 })
  const directBytes = logged(env, created.id, from)
  if (direct.some(h => h !== sha512)) throw new Error('a direct download was not byte-exact')

  from = statSync(env.accessLog).size
  const cpuBefore = all.reduce((n, a) => n + processCpu(a.pid), 0)
  started = Date.now()
  const finished: number[] = []
  const mesh = await Promise.all(all.map(async a => { const h = await sha512Of(`${a.url}/v2/images/${created.id}/file`); finished.push(Date.now() - started); return h }))
  const meshMs = Date.now() - started
  const cpu = all.reduce((n, a) => n + processCpu(a.pid), 0) - cpuBefore
  await new Promise(resolve => setTimeout(resolve, 1000))
  const { bytes: meshBytes, requests: meshRequests } = loggedRequests(env, created.id, from)
  if (mesh.some(h => h !== sha512)) throw new Error('a download through the mesh was not byte-exact')
  finished.sort((a, b) => a - b)

  console.log(mdTable(['', 'bytes the upstream sent', '× image size', 'until all had it (ms)', 'first / median agent done (ms)'], [
    [`${agents} clients straight from the upstream`, String(directBytes), fmt(directBytes / size, 3), String(directMs), '–'],
    [`${agents} agents at once, read through`, String(meshBytes), fmt(meshBytes / size, 3), String(meshMs), `${finished[0]} / ${finished[Math.floor(finished.length / 2)]}`]
  ]))
  console.log(`\nclients done, each agent (ms, sorted): ${finished.join(' ')}`)
  console.log(`upstream requests for the image while reading through: ${meshRequests}`)
  console.log(`agents' CPU while reading through: ${fmt(cpu, 1)} s, ${fmt(cpu / (agents * size / GiB), 1)} CPU-s per GiB delivered to clients`)
  console.log(`upstream bytes, mesh / direct: ${fmt(meshBytes / directBytes, 3)}; wall time, mesh / direct: ${fmt(meshMs / directMs, 2)}\n`)
})
