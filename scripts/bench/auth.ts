// What Keystone validation costs per API request (docs/benchmarks.md): GET /v2/images/{id} with
// noauth (the baseline, measured in the same run), with a Keystone token from the agent's cache,
// and with every request validated by Keystone (cacheSeconds 0). Needs `scripts/keystone.sh start`.
//   node scripts/bench/auth.ts            BENCH_REQUESTS=500
import { readFileSync } from 'node:fs'
import { startAgent } from '@peerglance/testing'
import type { TestAgent } from '@peerglance/testing'
import { envInt, fmt, log, mdTable, printHeader } from './lib.ts'

const REQUESTS = envInt('BENCH_REQUESTS', 500)
const env = JSON.parse(readFileSync(`${process.env.KS_HOME ?? '/var/tmp/peerglance-keystone'}/env.json`, 'utf8')) as {
  url: string
  accounts: Record<string, { username: string, password: string, projectName: string }>
}

async function token (account: { username: string, password: string, projectName: string }): Promise<string> {
  const res = await fetch(`${env.url}/auth/tokens?nocatalog`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: account.username, domain: { name: 'Default' }, password: account.password } } }, scope: { project: { name: account.projectName, domain: { name: 'Default' } } } } })
  })
  if (res.status !== 201) throw new Error(`token: ${res.status}`)
  return res.headers.get('x-subject-token') as string
}

/** Milliseconds per request, sorted. */
async function measure (agent: TestAgent, headers: Record<string, string>): Promise<number[]> {
  const create = await fetch(`${agent.url}/v2/images`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bench' }) })
  if (create.status !== 201) throw new Error(`create: ${create.status}`)
  const { id } = await create.json() as { id: string }
  const times: number[] = []
  for (let i = 0; i < REQUESTS + 20; i++) {
    const start = performance.now()
    const res = await fetch(`${agent.url}/v2/images/${id}`, { headers })
    await res.arrayBuffer()
    if (res.status !== 200) throw new Error(`GET: ${res.status}`)
    if (i >= 20) times.push(performance.now() - start) // the first 20 warm up
  }
  return times.sort((a, b) => a - b)
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]

printHeader('Keystone validation cost per request', { requests: REQUESTS })
const peerglance = env.accounts.peerglance
const keystone = (cacheSeconds: number): { auth: { mode: 'keystone', keystone: Record<string, unknown> } } =>
  ({ auth: { mode: 'keystone', keystone: { url: env.url, username: peerglance.username, password: peerglance.password, projectName: peerglance.projectName, cacheSeconds } } })
const rows: string[][] = []
let baseline = 0
const variants: Array<[string, Parameters<typeof startAgent>[0], () => Promise<Record<string, string>>]> = [
  ['noauth (baseline)', {}, async () => ({})],
  ['keystone, cached token', { config: keystone(300) }, async () => ({ 'x-auth-token': await token(env.accounts['alpha-member']) })],
  ['keystone, cacheSeconds 0', { config: keystone(0) }, async () => ({ 'x-auth-token': await token(env.accounts['alpha-member']) })]
]
for (const [name, opts, headers] of variants) {
  const agent = await startAgent(opts)
  try {
    log(name)
    const times = await measure(agent, await headers())
    const p50 = pct(times, 0.5)
    if (baseline === 0) baseline = p50
    rows.push([name, fmt(p50, 2), fmt(pct(times, 0.95), 2), fmt(p50 / baseline, 2)])
  } finally {
    await agent.stop()
  }
}
console.log(mdTable(['variant', 'p50 ms', 'p95 ms', 'p50 / baseline'], rows))
console.log()
