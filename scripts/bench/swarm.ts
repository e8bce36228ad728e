// The swarm benchmark (issue 8): 1 seed + N hosts, each host a network namespace whose link is
// shaped to RATE up and RATE down (HTB on both ends of a veth pair on one bridge, fq_codel as the
// bounded queue), a SIZE image seeded on h0 and read by h1..hN at the same moment. In the same
// invocation and on the same links:
//   - peerglance: one real agent per host (`peerglance agent`), the image uploaded to h0's Glance
//     API, then `curl` of /v2/images/ID/file on every other host at once;
//   - BitTorrent: opentracker on h0, aria2c seeding on h0 and downloading on every other host
//     (4 MiB pieces, made by mktorrent), all started at once.
// Printed per method: completion per host, the Kumar–Ross bound
// max(S/u_seed, S/d_min, N·S/(u_seed + Σu_i)), slowest/bound, seed egress ÷ S (bytes h0's link
// sent), and CPU-seconds (user, kernel) per GiB delivered over all the method's processes.
//
//   node scripts/bench/swarm.ts                       # N=8, 256 MiB, 200 Mbit
//   node scripts/bench/swarm.ts --hosts 8 --size 256 --rate 400 --reps 2
//   node scripts/bench/swarm.ts --only peerglance --prof /tmp/prof --strace /tmp/strace
//   node scripts/bench/swarm.ts --chunk-mib 4          # the agents' chunks.chunkSize (default 1 MiB)
//   node scripts/bench/swarm.ts --only peerglance --perf /tmp/perf   # perf record (cpu-clock, kernel stacks) of the agents
//   node scripts/bench/swarm.ts --only peerglance --perf /tmp/perf "--node-args=--perf-prof --perf-prof-path=/tmp/perf --interpreted-frames-native-stack"
//     then `perf inject --jit -i /tmp/perf/rep0.data -o /tmp/perf/rep0.jit.data`: JavaScript frames named by
//     code object and time (V8's jitdump); --perf-basic-prof's map names code by the first owner of its address
//   node scripts/bench/swarm.ts --only peerglance --node-args=--trace-gc --agent-log /tmp/logs   # node flags; agents' non-JSON output kept
//   node scripts/bench/swarm.ts --only peerglance --trace /tmp/trace   # every link's bytes each 100 ms; where the seed's link idled
//   node scripts/bench/swarm.ts --only peerglance --log-level debug --agent-log /tmp/logs   # per-chunk fetch lines: fetch times from the seed and the others, readers' waits
//   node scripts/bench/swarm.ts --work-dir /var/tmp   # where the agents' stores go (default /tmp; see the file system probe it prints)
//   node scripts/bench/swarm.ts --bridge-nf off       # the bridge forwards without netfilter's hooks (br_netfilter is loaded here)
//
// Needs root (namespaces). Everything it makes carries the prefix `pgswarm-<tag>-<pid>`: the
// namespaces (removing one removes its veths and bridge), the work dir under --work-dir (/tmp); all of it and
// every process it started (by pid) go on exit, error, SIGINT or SIGTERM. Every wait is bounded.
import { execFile, execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes, randomFillSync } from 'node:crypto'
import { closeSync, constants as fsConstants, createWriteStream, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { fmt, GiB, log, machineCpu, mdTable, median, MiB, processMemory, resetPeakRss, runBench } from './lib.ts'
import type { Cleanup } from './lib.ts'
import { fetchSummary, loopbackSamplerScript, parseChunkLog, parseCounter, parseQueues, parseSamples, queueSamplerScript, reachedAt, samplerScript, summarize } from './swarm-trace.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const AGENT_BIN = join(ROOT, 'packages/agent/bin/peerglance.js')
const HZ = 100
const SUBNET = '10.77.0'
const MESH_KEY = randomBytes(32).toString('hex')
const API = 'http://127.0.0.1:9292'
const P2P_PORT = 4001
const TRACKER_PORT = 6969

const { values: opts } = parseArgs({
  options: {
    hosts: { type: 'string', default: '8' },
    size: { type: 'string', default: '256' },
    rate: { type: 'string', default: '200' },
    reps: { type: 'string', default: '1' },
    only: { type: 'string' },
    tag: { type: 'string', default: 'bench' },
    'chunk-mib': { type: 'string' },
    prof: { type: 'string' },
    strace: { type: 'string' },
    perf: { type: 'string' },
    'node-args': { type: 'string' },
    'agent-log': { type: 'string' },
    'log-level': { type: 'string', default: 'info' },
    trace: { type: 'string' },
    'timeout-s': { type: 'string', default: '600' },
    'work-dir': { type: 'string', default: '/tmp' },
    'bridge-nf': { type: 'string', default: 'on' }
  }
})
const N = positiveInt(opts.hosts, '--hosts')
const SIZE_MIB = positiveInt(opts.size, '--size')
const RATE_MBIT = positiveInt(opts.rate, '--rate')
const REPS = positiveInt(opts.reps, '--reps')
const TIMEOUT_MS = positiveInt(opts['timeout-s'], '--timeout-s') * 1000
const SIZE = SIZE_MIB * MiB
const QUEUE_BYTES = Math.max(256 * 1024, Math.round(RATE_MBIT * 1e6 / 8 * 0.05))
const PREFIX = `pgswarm-${opts.tag}-${process.pid}`
if (!/^[a-z0-9-]{1,40}$/.test(PREFIX)) throw new Error(`--tag must be lowercase letters, digits and dashes: ${opts.tag}`)
const METHODS = (opts.only ?? 'peerglance,bittorrent').split(',')

function positiveInt (raw: string | undefined, name: string): number {
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, not ${raw}`)
  return n
}

// ---------------------------------------------------------------------------------------------
// Commands, processes, /proc

async function run (cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * MiB }, (err, stdout, stderr) => {
      if (err != null) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message} ${stderr}`))
      else resolve(stdout)
    })
  })
}

const started = new Set<ChildProcess>()

/** A process inside a namespace; `ip netns exec` execs in place, so its pid is the command's. */
function spawnIn (ns: string, cmd: string, args: string[], extra: { env?: NodeJS.ProcessEnv, cwd?: string, stdout?: 'pipe' | 'ignore' } = {}): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
    stdio: ['ignore', extra.stdout ?? 'ignore', 'pipe'],
    env: { ...process.env, ...extra.env },
    cwd: extra.cwd
  })
  started.add(child)
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { if (stderr.length < 8192) stderr += d.toString() })
  child.once('exit', (code, signal) => {
    started.delete(child)
    if (code !== 0 && code != null && signal == null) log(`${cmd} in ${ns} exited with ${code}: ${stderr.trim().slice(0, 2000)}`)
  })
  return child
}

async function stopProcess (child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode != null || child.signalCode != null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
  child.kill('SIGTERM')
  const timer = setTimeout(() => { child.kill('SIGKILL') }, graceMs)
  await exited
  clearTimeout(timer)
}

interface Cpu { user: number, sys: number }

function procCpu (pid: number | undefined): Cpu {
  if (pid == null) return { user: 0, sys: 0 }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { user: Number(f[11]) / HZ, sys: Number(f[12]) / HZ }
  } catch {
    return { user: 0, sys: 0 }
  }
}

/** CPU of a process by thread name (MainThread, libuv-worker, V8Worker, ...), summed over threads of one name. */
function threadCpu (pid: number | undefined): Map<string, Cpu> {
  const out = new Map<string, Cpu>()
  if (pid == null) return out
  let tasks: string[] = []
  try { tasks = readdirSync(`/proc/${pid}/task`) } catch { return out }
  for (const task of tasks) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const c = out.get(name) ?? { user: 0, sys: 0 }
      c.user += Number(f[11]) / HZ
      c.sys += Number(f[12]) / HZ
      out.set(name, c)
    } catch {}
  }
  return out
}

/** Per thread name: CPU between two `threadCpu` readings, as "name user/sys". */
function cpuDelta (before: Cpu | undefined, after: Cpu | undefined): Cpu {
  return { user: (after?.user ?? 0) - (before?.user ?? 0), sys: (after?.sys ?? 0) - (before?.sys ?? 0) }
}

const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length)

function threadDelta (before: Map<string, Cpu>, after: Map<string, Cpu>): string {
  return [...after].map(([name, c]) => {
    const b = before.get(name) ?? { user: 0, sys: 0 }
    return { name, user: c.user - b.user, sys: c.sys - b.sys }
  }).filter(d => d.user + d.sys > 0.05).sort((x, y) => y.user + y.sys - x.user - x.sys)
    .map(d => `${d.name} ${fmt(d.user, 2)}/${fmt(d.sys, 2)}`).join(', ')
}

function cpuOf (pids: Array<number | undefined>): Cpu {
  const total = { user: 0, sys: 0 }
  for (const pid of pids) {
    const c = procCpu(pid)
    total.user += c.user
    total.sys += c.sys
  }
  return total
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Polls `check` every `everyMs` until it returns a value other than undefined, for at most `ms`. */
async function until<T> (what: string, ms: number, check: () => Promise<T | undefined>, everyMs = 250): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    await sleep(everyMs)
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last != null ? `: ${(last as Error).message}` : ''}`)
}

// ---------------------------------------------------------------------------------------------
// The network: a bridge namespace and one namespace per host

const bridgeNs = `${PREFIX}-br`
const hostNs = (i: number): string => `${PREFIX}-h${i}`
const hostIp = (i: number): string => `${SUBNET}.${i + 1}`
const made: string[] = []

async function shape (ns: string, dev: string): Promise<void> {
  // HTB caps the rate; a byte FIFO under it is the bounded queue: 50 ms at the rate (fq_codel
  // would keep the delay lower, but this kernel has no such module).
  await run('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '1'])
  await run('tc', ['-n', ns, 'class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', `${RATE_MBIT}mbit`, 'ceil', `${RATE_MBIT}mbit`])
  await run('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'parent', '1:1', 'handle', '10:', 'bfifo', 'limit', String(QUEUE_BYTES)])
}

async function buildNetwork (cleanup: Cleanup): Promise<void> {
  cleanup.add(async () => {
    for (const ns of made.reverse()) await run('ip', ['netns', 'del', ns]).catch(err => { log(`could not delete ${ns}: ${(err as Error).message}`) })
  })
  await run('ip', ['netns', 'add', bridgeNs])
  made.push(bridgeNs)
  await run('ip', ['-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge'])
  await run('ip', ['-n', bridgeNs, 'link', 'set', 'br0', 'up'])
  // With br_netfilter loaded (Docker loads it), every bridged packet also walks iptables: ~2 % of
  // the agents' samples, charged to whichever process the softirq interrupts, so more to busy agents than
  // to a mostly idle aria2c. A network between hypervisors has no such hop; the switch is per
  // namespace, so `--bridge-nf off` changes only ours.
  if (!['on', 'off'].includes(opts['bridge-nf'])) throw new Error(`--bridge-nf is on or off, not ${opts['bridge-nf']}`)
  if (opts['bridge-nf'] === 'off') await run('ip', ['netns', 'exec', bridgeNs, 'sh', '-c', 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -w "$f" ] && echo 0 > "$f"; done; true'])
  for (let i = 0; i <= N; i++) {
    const ns = hostNs(i)
    await run('ip', ['netns', 'add', ns])
    made.push(ns)
    // Both ends are created inside our namespaces: nothing of the root namespace is touched.
    await run('ip', ['-n', bridgeNs, 'link', 'add', `h${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    await run('ip', ['-n', bridgeNs, 'link', 'set', `h${i}`, 'master', 'br0', 'up'])
    await run('ip', ['-n', ns, 'addr', 'add', `${hostIp(i)}/24`, 'dev', 'eth0'])
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    await shape(ns, 'eth0') // the host's upload
    await shape(bridgeNs, `h${i}`) // the host's download
  }
}

/** Bytes the host's link has sent so far. */
async function txBytes (i: number): Promise<number> {
  const out = JSON.parse(await run('ip', ['-n', hostNs(i), '-s', '-j', 'link', 'show', 'eth0'])) as Array<{ stats64: { tx: { bytes: number } } }>
  return out[0].stats64.tx.bytes
}

// ---------------------------------------------------------------------------------------------
// Results

interface Result {
  method: string
  /** Seconds from the common start until each host had the whole image, h1..hN. */
  done: number[]
  seedTx: number
  /** Chunk protocol bytes the seed's agent sent (peerglance only): seed egress without TCP/IP headers. */
  seedPayload?: number
  cpu: Cpu
  /** Whole machine busy over the run, % of one core, and ours. */
  machinePct: number
  oursPct: number
  load: number[]
  note: string
}

/** The Kumar–Ross minimum distribution time, every link at the same rate. */
function bound (): number {
  const bits = SIZE * 8
  const u = RATE_MBIT * 1e6
  return Math.max(bits / u, bits / u, N * bits / (u + N * u))
}

async function measure (method: string, pids: () => Array<number | undefined>, body: () => Promise<{ done: number[], note: string }>): Promise<Result> {
  const tx0 = await txBytes(0)
  const cpu0 = cpuOf(pids())
  const m0 = machineCpu()
  const t0 = performance.now()
  const { done, note } = await body()
  const sec = (performance.now() - t0) / 1000
  const cpu1 = cpuOf(pids())
  const m1 = machineCpu()
  const tx1 = await txBytes(0)
  const cpu = { user: cpu1.user - cpu0.user, sys: cpu1.sys - cpu0.sys }
  return {
    method,
    done,
    seedTx: tx1 - tx0,
    cpu,
    machinePct: 100 * (m1.busy - m0.busy) / sec,
    oursPct: 100 * (cpu.user + cpu.sys) / sec,
    load: loadavg(),
    note
  }
}

// ---------------------------------------------------------------------------------------------
// peerglance: one agent per host

interface HostAgent {
  child: ChildProcess
  peerId: string
  /** Its sessions' per-chunk debug lines (with --log-level debug). */
  chunkLog: string[]
}

async function startAgent (work: string, i: number, bootstrap: string | undefined, rep: number): Promise<HostAgent> {
  const dataDir = join(work, `agent-${rep}-h${i}`)
  await mkdir(dataDir, { recursive: true })
  // Agents on non-loopback addresses must share a mesh key (they refuse to start without one).
  const config = join(work, 'mesh-key.yaml')
  const chunks = opts['chunk-mib'] != null ? `chunks:\n  chunkSize: ${positiveInt(opts['chunk-mib'], '--chunk-mib') * MiB}\n` : ''
  await writeFile(config, `mesh:\n  key: ${MESH_KEY}\n${chunks}`)
  const nodeArgs = [...(opts.prof != null ? ['--cpu-prof', `--cpu-prof-dir=${join(opts.prof, `rep${rep}-h${i}`)}`] : []), ...(opts['node-args']?.split(' ').filter(a => a !== '') ?? [])]
  if (opts['agent-log'] != null) await mkdir(opts['agent-log'], { recursive: true })
  const agentLog = opts['agent-log'] != null ? createWriteStream(join(opts['agent-log'], `rep${rep}-h${i}.log`)) : undefined
  const args = [...nodeArgs, AGENT_BIN, 'agent', '--data-dir', dataDir, '--api-listen', '127.0.0.1:9292', '--log-level', opts['log-level'], '--config', config,
    '--p2p-listen', `/ip4/${hostIp(i)}/tcp/${P2P_PORT}`, ...(bootstrap != null ? ['--bootstrap', bootstrap] : [])]
  const child = spawnIn(hostNs(i), process.execPath, args, { stdout: 'pipe' })
  return await new Promise<HostAgent>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`agent on h${i} did not start within 60 s`)) }, 60_000)
    let peerId = ''
    const chunkLog: string[] = []
    createInterface({ input: child.stdout! }).on('line', line => {
      let entry: Record<string, unknown>
      try {
        entry = JSON.parse(line)
      } catch {
        agentLog?.write(`${line}\n`)
        return
      }
      // At debug, the sessions' fetches and waits (`fetchSummary` after the download).
      if (opts['log-level'] === 'debug') {
        agentLog?.write(`${line}\n`)
        if (/"msg":"(fetch|reader waits)/.test(line)) chunkLog.push(line)
      }
      if (entry.msg === 'mesh started') peerId = String(entry.peer)
      if (entry.msg === 'agent started') {
        clearTimeout(timer)
        resolve({ child, peerId, chunkLog })
      }
      if (entry.level != null && Number(entry.level) >= 50) log(`h${i}: ${line.slice(0, 500)}`)
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`agent on h${i} exited with ${code}`)) })
  })
}

async function curlIn (i: number, args: string[], timeoutMs = 60_000): Promise<string> {
  return await run('ip', ['netns', 'exec', hostNs(i), 'curl', '-sS', '--fail-with-body', ...args], timeoutMs)
}

async function status (i: number): Promise<{ peers: string[], images: Array<{ id: string, status: string }> }> {
  return JSON.parse(await curlIn(i, [`${API}/peerglance/v1/status`], 10_000))
}

/** A counter from the agent's /metrics (summed over its label sets). */
async function metricIn (i: number, name: string): Promise<number> {
  let total = 0
  for (const line of (await curlIn(i, [`${API}/metrics`], 10_000)).split('\n')) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`).exec(line)
    if (m != null) total += Number(m[1])
  }
  return total
}

async function runPeerglance (work: string, image: string, rep: number): Promise<Result> {
  const agents: HostAgent[] = []
  try {
    agents.push(await startAgent(work, 0, undefined, rep))
    const boot = `/ip4/${hostIp(0)}/tcp/${P2P_PORT}/p2p/${agents[0].peerId}`
    agents.push(...await Promise.all(Array.from({ length: N }, async (_, k) => await startAgent(work, k + 1, boot, rep))))
    // Peer exchange connects every agent to every other: past its target of 6 peers only by its
    // rotation (one dial a minute, earlier at start), so ~45 s on a quiet machine, more when loaded.
    await until('a full mesh', 180_000, async () => {
      const views = await Promise.all(agents.map(async (_, i) => await status(i)))
      return views.every(v => v.peers.length >= N) ? true : undefined
    })
    const created = JSON.parse(await curlIn(0, ['-X', 'POST', '-H', 'content-type: application/json',
      '-d', JSON.stringify({ name: 'swarm-bench', disk_format: 'raw', container_format: 'bare' }), `${API}/v2/images`])) as { id: string }
    const id = created.id
    await curlIn(0, ['-X', 'PUT', '-H', 'content-type: application/octet-stream', '-T', image, `${API}/v2/images/${id}/file`], 600_000)
    await until('the image active on every agent', 60_000, async () => {
      const views = await Promise.all(agents.map(async (_, i) => await status(i)))
      return views.every(v => v.images.some(im => im.id === id && im.status === 'active')) ? true : undefined
    })
    // What the nine agents burn doing nothing (ping, gossip, metadata sync): part of every figure per GiB.
    const idle0 = cpuOf(agents.map(a => a.child.pid))
    const idleFlows0 = await connectionsIn(1)
    await new Promise(resolve => setTimeout(resolve, 5_000))
    const idle1 = cpuOf(agents.map(a => a.child.pid))
    log(`peerglance agents idle: ${fmt((idle1.user + idle1.sys - idle0.user - idle0.sys) / 5, 3)} CPU-s per second, all ${N + 1} together; h1's connections in those 5 s: ${flowDelta(idleFlows0, await connectionsIn(1))}`)
    log(fileSystemProbe(join(work, `fs-probe-${rep}`)))
    const traces = opts.strace != null ? await startStrace(agents.map(a => a.child.pid!), `rep${rep}`) : []
    if (opts.perf != null) traces.push(await startPerf(agents.map(a => a.child.pid!), `rep${rep}`))
    const flows0 = await Promise.all(agents.map(async (_, i) => await connectionsIn(i)))
    const threads0 = agents.map(a => threadCpu(a.child.pid))
    for (const a of agents) await resetPeakRss(a.child.pid!)
    const sent0 = await metricIn(0, 'peerglance_peer_bytes_sent_total')
    const links = opts.trace != null ? await startLinkTrace(`rep${rep}`) : undefined
    let epoch0 = 0
    const result = await measure('peerglance', () => agents.map(a => a.child.pid), async () => {
      const t0 = performance.now()
      epoch0 = Date.now() / 1000
      const done = await Promise.all(Array.from({ length: N }, async (_, k) => {
        const out = await curlIn(k + 1, ['-o', '/dev/null', '-w', '%{http_code} %{size_download}', `${API}/v2/images/${id}/file`], TIMEOUT_MS)
        const sec = (performance.now() - t0) / 1000
        const [code, bytes] = out.trim().split(' ').map(Number)
        if (code !== 200 || bytes !== SIZE) throw new Error(`h${k + 1} got HTTP ${code} with ${bytes} of ${SIZE} bytes`)
        return sec
      }))
      return { done, note: '' }
    })
    const threads1 = agents.map(a => threadCpu(a.child.pid))
    // Peak RSS in the download (VmHWM, reset before it) and private part now, MB: issue 8's < 150 MB target.
    const rss = agents.map(a => processMemory(a.child.pid!))
    log(`peerglance RSS in the download, MB, peak (private now): ${rss.map((m, i) => `h${i} ${fmt(m.hwmKiB * 1024 / 1e6, 0)} (${fmt(m.anonKiB * 1024 / 1e6, 0)})`).join(', ')}`)
    if (links != null) log(await links.stop(epoch0, result.done))
    const flows1 = await Promise.all(agents.map(async (_, i) => await connectionsIn(i)))
    log(`peerglance TCP connections per host by kind, during the download (sent/received):\n  ${flows1.map((f, i) => `h${i} ${flowDelta(flows0[i], f)}`).join('\n  ')}`)
    for (const trace of traces) await stopProcess(trace, 60_000)
    log(`peerglance CPU-s user/sys by thread during the download:\n  ${threads1.map((t, i) => `h${i} ${threadDelta(threads0[i], t)}`).join('\n  ')}`)
    const mains = threads1.slice(1).map((t, i) => cpuDelta(threads0[i + 1].get('MainThread'), t.get('MainThread')))
    log(`peerglance downloaders' MainThread CPU-s during the download, mean of h1..h${N}: ${fmt(mean(mains.map(c => c.user)), 2)} user, ${fmt(mean(mains.map(c => c.sys)), 2)} sys`)
    result.seedPayload = await metricIn(0, 'peerglance_peer_bytes_sent_total') - sent0
    // Who sent and received how much (chunk-protocol frames, MiB): duplicates show here first.
    const flows = await Promise.all(agents.map(async (_, i) => `h${i} ${fmt(await metricIn(i, 'peerglance_peer_bytes_sent_total') / MiB, 0)}/${fmt(await metricIn(i, 'peerglance_peer_bytes_received_total') / MiB, 0)}`))
    log(`peerglance MiB sent/received per host: ${flows.join(', ')}`)
    const bulk = await Promise.all(agents.map(async (_, i) => await metricIn(i, 'peerglance_peer_bulk_channels')))
    log(`peerglance bulk channels opened to each host (accepted + refused): ${bulk.join(', ')}`)
    const served = await Promise.all(agents.map(async (_, i) => (await curlIn(i, [`${API}/metrics`], 10_000)).split('\n')
      .filter(line => line.startsWith('peerglance_peer_requests_served{')).map(line => line.replace(/^.*kind="([^"]+)"\} /, '$1=')).join(' ')))
    log(`peerglance requests served per host:\n  ${served.map((line, i) => `h${i} ${line}`).join('\n  ')}`)
    const fetches = await Promise.all(agents.slice(1).map(async (_, k) => (await curlIn(k + 1, [`${API}/metrics`], 10_000)).split('\n')
      .filter(line => line.startsWith('peerglance_chunk_fetches{')).map(line => line.replace(/^.*kind="([^"]+)"\} /, '$1=')).join(' ')))
    log(`peerglance chunk fetches per downloader, by scheduling step and source (and failures by error):\n  ${fetches.map((line, k) => `h${k + 1} ${line}`).join('\n  ')}`)
    if (opts['log-level'] === 'debug') {
      const lines = agents.slice(1).map((a, k) => {
        const { fetches, waits } = parseChunkLog(a.chunkLog.splice(0).join('\n'), epoch0)
        const s = fetchSummary(fetches, waits, agents[0].peerId)
        return `h${k + 1} from the seed ${s.fromSeed.n} in ${fmt(s.fromSeed.median, 2)} s (slowest ${fmt(s.fromSeed.max, 2)}), from the others ${s.fromOthers.n} in ${fmt(s.fromOthers.median, 2)} s (slowest ${fmt(s.fromOthers.max, 2)}); reader blocked ${fmt(s.blocked, 1)} s`
      })
      log(`peerglance fetches per downloader, median time each (from the agents' debug lines):\n  ${lines.join('\n  ')}`)
    }
    return result
  } finally {
    await Promise.all(agents.map(async a => { await stopProcess(a.child, 20_000) }))
    for (let i = 0; i <= N; i++) await rm(join(work, `agent-${rep}-h${i}`), { recursive: true, force: true })
  }
}

interface Flows { n: number, sent: number, received: number, segsOut: number, segsIn: number }

/** The host's established TCP connections by kind (libp2p, HTTP on loopback, else the bulk channel): count, bytes and data segments each way. */
async function connectionsIn (i: number): Promise<Map<string, Flows>> {
  const kinds = new Map<string, Flows>()
  const lines = (await run('ip', ['netns', 'exec', hostNs(i), 'ss', '-tinH', 'state', 'established'])).split('\n')
  for (let k = 0; k + 1 < lines.length; k += 2) {
    const [local, peer] = lines[k].trim().split(/\s+/).slice(2, 4)
    const port = (ep: string): number => Number(ep.slice(ep.lastIndexOf(':') + 1))
    const ports = [port(local), port(peer)]
    const kind = ports.includes(P2P_PORT) ? 'libp2p' : ports.includes(9292) ? 'http' : 'bulk'
    const sent = Number(/bytes_sent:(\d+)/.exec(lines[k + 1])?.[1] ?? 0)
    const received = Number(/bytes_received:(\d+)/.exec(lines[k + 1])?.[1] ?? 0)
    const segsOut = Number(/data_segs_out:(\d+)/.exec(lines[k + 1])?.[1] ?? 0)
    const segsIn = Number(/data_segs_in:(\d+)/.exec(lines[k + 1])?.[1] ?? 0)
    const c = kinds.get(kind) ?? { n: 0, sent: 0, received: 0, segsOut: 0, segsIn: 0 }
    kinds.set(kind, { n: c.n + 1, sent: c.sent + sent, received: c.received + received, segsOut: c.segsOut + segsOut, segsIn: c.segsIn + segsIn })
  }
  return kinds
}

/** What flowed between two `connectionsIn` readings (connections that closed in between are missing from the second). */
function flowDelta (before: Map<string, Flows>, after: Map<string, Flows>): string {
  return [...after].map(([kind, c]) => {
    const b = before.get(kind) ?? { n: 0, sent: 0, received: 0, segsOut: 0, segsIn: 0 }
    return `${kind} ${c.n} conns, ${fmt((c.sent - b.sent) / MiB, 1)}/${fmt((c.received - b.received) / MiB, 1)} MiB, ${c.segsOut - b.segsOut}/${c.segsIn - b.segsIn} data segments`
  }).join('; ')
}

/**
 * Samples every host link's byte counters each 100 ms in the bridge namespace (--trace DIR: the
 * raw samples go to DIR/LABEL-links.txt); `stop` says where the seed's link was not full.
 */
async function startLinkTrace (label: string): Promise<{ stop: (epoch0: number, done: number[]) => Promise<string> }> {
  await mkdir(opts.trace!, { recursive: true })
  const file = join(opts.trace!, `${label}-links.txt`)
  const child = spawnIn(bridgeNs, 'bash', ['-c', samplerScript(N + 1, 100)], { stdout: 'pipe' })
  let text = ''
  child.stdout?.on('data', (d: Buffer) => { text += d.toString() })
  // What the seed had queued in its sockets: an empty queue while its link idles means nobody asked.
  const queues = spawnIn(hostNs(0), 'bash', ['-c', queueSamplerScript(200)], { stdout: 'pipe' })
  let queueText = ''
  queues.stdout?.on('data', (d: Buffer) => { queueText += d.toString() })
  // Each downloader's loopback: the HTTP download to its curl, against what its link received.
  const loopbacks = Array.from({ length: N }, (_, k) => {
    const sampler = spawnIn(hostNs(k + 1), 'bash', ['-c', loopbackSamplerScript(100)], { stdout: 'pipe' })
    const out = { sampler, text: '' }
    sampler.stdout?.on('data', (d: Buffer) => { out.text += d.toString() })
    return out
  })
  await sleep(300)
  return {
    async stop (epoch0, done) {
      await sleep(300)
      await stopProcess(child, 2_000)
      await stopProcess(queues, 2_000)
      for (const l of loopbacks) await stopProcess(l.sampler, 2_000)
      await writeFile(file, text)
      await writeFile(join(opts.trace!, `${label}-seed-queues.txt`), queueText)
      for (const [k, l] of loopbacks.entries()) await writeFile(join(opts.trace!, `${label}-h${k + 1}-loopback.txt`), l.text)
      await writeFile(join(opts.trace!, `${label}-start.txt`), `${epoch0}\n`)
      const q = parseQueues(queueText, epoch0, [P2P_PORT, 9292]).filter(r => r.t >= 0 && r.t <= Math.max(...done))
      const perHalf = new Map<number, Array<{ queued: number, busy: number }>>()
      for (const r of q) perHalf.set(Math.floor(r.t * 2), [...(perHalf.get(Math.floor(r.t * 2)) ?? []), r])
      const rate = RATE_MBIT * 1e6 / 8
      const samples = parseSamples(text, N + 1, epoch0)
      const s = summarize(samples, rate, done)
      const hosts = loopbacks.map((l, k) => {
        const link = samples.map((x): [number, number] => [x.t, x.received[k + 1] - samples[0].received[k + 1]])
        const http = parseCounter(l.text, epoch0)
        return `h${k + 1} link ${fmt(reachedAt(link, 0.5), 1)}/${fmt(reachedAt(link, 0.9), 1)}/${fmt(reachedAt(link, 0.999), 2)}, curl ${fmt(reachedAt(http, 0.5), 1)}/${fmt(reachedAt(http, 0.9), 1)}/${fmt(reachedAt(http, 0.999), 2)}, done ${fmt(done[k], 2)}`
      })
      return [
        `seed link (${file}): first byte at ${fmt(s.seedFirst, 2)} s, done (99.5 %) at ${fmt(s.seedDone, 2)} s, needed ${fmt(s.seedNeeded, 2)} s at full rate: idle ${fmt(s.seedIdle, 2)} s before it was done`,
        `  under 80 % of its rate: ${s.gaps.map(g => `${fmt(g.from, 1)}-${fmt(g.to, 1)} s at ${fmt(100 * g.rate)} %`).join(', ') || 'never'}`,
        `  hosts done after the seed: ${[...s.after].sort((a, b) => a - b).map(a => fmt(a, 2)).join(' ')} s`,
        `  seed rate per 0.5 s, % of its link: ${s.profile.map(p => fmt(100 * p)).join(' ')}`,
        `  per downloader, when 50/90/99.9 % had come over its link and gone to its curl (s):\n    ${hosts.join('\n    ')}`,
        `  seed's bulk sockets' send queues per 0.5 s, KiB (sockets with data): ${[...perHalf.values()].map(rs => `${fmt(mean(rs.map(r => r.queued)) / 1024)}(${fmt(mean(rs.map(r => r.busy)))})`).join(' ')}`
      ].join('\n')
    }
  }
}

/**
 * What a new file and a new directory cost the kernel here now: this machine's ext4 has no journal,
 * and then every inode allocation steps past each free inode deleted in the last 60 s (360 s while its
 * table block is dirty). After mass deletions (test suites, a previous rep's stores) that is 0.2-0.7
 * ms per inode instead of ~0.02, and a downloader makes one per chunk: it moves the agents' CPU per
 * GiB between runs of the same code (docs/benchmarks.md, "The chunk files on a downloader").
 */
function fileSystemProbe (dir: string): string {
  mkdirSync(dir, { recursive: true })
  const t0 = process.cpuUsage()
  for (let i = 0; i < 64; i++) closeSync(openSync(join(dir, `f${i}`), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL))
  const t1 = process.cpuUsage()
  for (let i = 0; i < 16; i++) mkdirSync(join(dir, `d${i}`))
  const t2 = process.cpuUsage()
  rmSync(dir, { recursive: true, force: true })
  return `file system probe: ${fmt((t1.system - t0.system) / 64 / 1000, 3)} ms of kernel CPU per file created, ${fmt((t2.system - t1.system) / 16 / 1000, 3)} per directory (~0.02 without recently deleted inodes to step past)`
}

/** `strace -c -f` attached to each agent for the download phase; summaries in --strace DIR. */
async function startStrace (pids: number[], label: string): Promise<ChildProcess[]> {
  await mkdir(opts.strace!, { recursive: true })
  const traces = pids.map((pid, i) => {
    const child = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', join(opts.strace!, `${label}-h${i}.txt`)], { stdio: 'ignore' })
    started.add(child)
    child.once('exit', () => started.delete(child))
    return child
  })
  await sleep(500)
  return traces
}

/** `perf record` of the agents' threads (cpu-clock: this VM has no hardware counters; kernel stacks) for the download phase. */
async function startPerf (pids: number[], label: string): Promise<ChildProcess> {
  await mkdir(opts.perf!, { recursive: true })
  // The monotonic clock: V8's jitdump (--perf-prof) stamps code with it, for `perf inject --jit`.
  const child = spawn('perf', ['record', '-q', '-k', 'mono', '-e', 'cpu-clock', '-F', '499', '-g', '-p', pids.join(','), '-o', join(opts.perf!, `${label}.data`)], { stdio: 'ignore' })
  started.add(child)
  child.once('exit', () => started.delete(child))
  await sleep(1000)
  return child
}

// ---------------------------------------------------------------------------------------------
// BitTorrent: opentracker + aria2c

async function listening (i: number, port: number): Promise<true | undefined> {
  const out = await run('ip', ['netns', 'exec', hostNs(i), 'ss', '-Hltn', `sport = :${port}`])
  return out.trim() !== '' ? true : undefined
}

async function runBitTorrent (work: string, image: string, torrent: string, infoHash: string, rep: number): Promise<Result> {
  const procs: ChildProcess[] = []
  const dir = join(work, `bt-${rep}`)
  try {
    await mkdir(dir, { recursive: true })
    // The Debian build only serves whitelisted torrents; it chroots into its cwd, hence relative paths.
    await writeFile(join(dir, 'whitelist.txt'), `${infoHash}\n`)
    procs.push(spawnIn(hostNs(0), 'opentracker', ['-i', hostIp(0), '-p', String(TRACKER_PORT), '-P', String(TRACKER_PORT), '-w', 'whitelist.txt', '-u', 'nobody', '-d', '.'], { cwd: dir }))
    await until('the tracker', 10_000, async () => await listening(0, TRACKER_PORT))
    const hook = join(dir, 'done.sh')
    await writeFile(hook, '#!/bin/sh\ndate +%s.%N > "$PG_DONE_FILE"\n')
    await chmod(hook, 0o755)
    const common = ['--enable-dht=false', '--enable-dht6=false', '--bt-enable-lpd=false', '--enable-peer-exchange=true', '--seed-ratio=0.0',
      '--file-allocation=none', '--summary-interval=0', '--console-log-level=warn', '--check-certificate=false', '--bt-max-peers=0',
      '--listen-port=6881', '--auto-file-renaming=false', '--allow-overwrite=true', '--quiet=true']
    // The seed: the image file, already complete, served without a hash check of its own.
    const seedDir = join(dir, 'h0')
    await mkdir(seedDir)
    await run('ln', [image, join(seedDir, 'image.raw')]).catch(async () => { await run('cp', [image, join(seedDir, 'image.raw')]) })
    procs.push(spawnIn(hostNs(0), 'aria2c', [...common, '--bt-seed-unverified=true', '-d', seedDir, torrent]))
    await until('the seed to listen', 30_000, async () => await listening(0, 6881))
    // and to announce itself, so downloaders learn of it from the tracker.
    await sleep(1000)
    const downloaders: ChildProcess[] = []
    let perf: ChildProcess | undefined
    const result = await measure('bittorrent', () => [...procs, ...downloaders].map(p => p.pid), async () => {
      const epoch0 = Date.now() / 1000
      for (let i = 1; i <= N; i++) {
        const out = join(dir, `h${i}`)
        await mkdir(out)
        downloaders.push(spawnIn(hostNs(i), 'aria2c', [...common, `--on-bt-download-complete=${hook}`, '-d', out, torrent], { env: { PG_DONE_FILE: join(dir, `done-h${i}`) } }))
      }
      if (opts.perf != null) perf = await startPerf([...procs, ...downloaders].map(p => p.pid!), `bt-rep${rep}`)
      const done = await until('every aria2c download', TIMEOUT_MS, async () => {
        const times: number[] = []
        for (let i = 1; i <= N; i++) {
          const text = await readFile(join(dir, `done-h${i}`), 'utf8').catch(() => '')
          if (text.trim() === '') return undefined
          times.push(Number(text.trim()) - epoch0)
        }
        return times
      }, 50)
      for (let i = 1; i <= N; i++) {
        const size = (await stat(join(dir, `h${i}`, 'image.raw'))).size
        if (size !== SIZE) throw new Error(`aria2c on h${i} wrote ${size} of ${SIZE} bytes`)
      }
      return { done, note: 'completion from aria2c\'s download-complete hook (50 ms polling)' }
    })
    procs.push(...downloaders)
    if (perf != null) await stopProcess(perf, 60_000)
    return result
  } finally {
    await Promise.all(procs.map(async p => { await stopProcess(p) }))
    await rm(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------

async function makeImage (file: string): Promise<void> {
  const out = createWriteStream(file)
  const chunk = Buffer.allocUnsafe(MiB)
  for (let i = 0; i < SIZE_MIB; i++) {
    randomFillSync(chunk)
    if (!out.write(chunk)) await new Promise<void>(resolve => out.once('drain', () => { resolve() }))
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => { if (err != null) reject(err); else resolve() }))
}

function row (r: Result, b: number): string[] {
  const slowest = Math.max(...r.done)
  const gib = N * SIZE / GiB
  return [
    r.method,
    fmt(slowest, 1),
    [...r.done].sort((a, b) => a - b).map(s => fmt(s, 1)).join(' '),
    fmt(slowest / b, 2),
    `${fmt(r.seedTx / SIZE, 3)}${r.seedPayload != null ? ` (${fmt(r.seedPayload / SIZE, 3)})` : ''}`,
    `${fmt(r.cpu.user + r.cpu.sys, 1)} (${fmt(r.cpu.user, 1)} user, ${fmt(r.cpu.sys, 1)} sys)`,
    fmt((r.cpu.user + r.cpu.sys) / gib, 2),
    `${fmt(r.oursPct)} / ${fmt(r.machinePct)}`,
    r.load.map(x => x.toFixed(1)).join(' ')
  ]
}

// runBench cleans up on the first SIGINT/SIGTERM; a second one (a job runner's, a user's) must not
// kill the process half way through deleting namespaces: with these listeners it is ignored.
process.on('SIGINT', () => {})
process.on('SIGTERM', () => {})

await runBench(async cleanup => {
  if (process.getuid?.() !== 0) throw new Error('the swarm benchmark needs root (network namespaces)')
  execFileSync('bash', [join(ROOT, 'scripts/install-bench-deps.sh')], { stdio: 'inherit' })
  cleanup.add(async () => {
    for (const child of started) child.kill('SIGKILL')
  })
  const work = join(opts['work-dir'], `${PREFIX}-${randomBytes(3).toString('hex')}`)
  await mkdir(work)
  cleanup.add(async () => { await rm(work, { recursive: true, force: true }) })
  const b = bound()
  console.log(`## Swarm: 1 seed + ${N} hosts, ${SIZE_MIB} MiB, ${RATE_MBIT} Mbit/s up and down per host\n`)
  console.log(`- command: \`node scripts/bench/swarm.ts ${process.argv.slice(2).join(' ')}\``)
  console.log(`- date: ${new Date().toISOString()}; ${cpus().length} vCPU; Node ${process.version}; load average at start ${loadavg().map(x => x.toFixed(2)).join(' ')}`)
  console.log(`- bound (Kumar–Ross, every link ${RATE_MBIT} Mbit/s): ${fmt(b, 2)} s\n`)
  await buildNetwork(cleanup)
  const image = join(work, 'image.raw')
  await makeImage(image)
  let torrent = ''
  let infoHash = ''
  if (METHODS.includes('bittorrent')) {
    torrent = join(work, 'image.torrent')
    await run('mktorrent', ['-l', '22', '-a', `http://${hostIp(0)}:${TRACKER_PORT}/announce`, '-o', torrent, image], 120_000)
    infoHash = /Info Hash:\s*([0-9a-f]{40})/i.exec(await run('aria2c', ['-S', torrent]))?.[1] ?? ''
    if (infoHash === '') throw new Error('no info hash from aria2c -S')
  }
  const results: Result[] = []
  for (let rep = 0; rep < REPS; rep++) {
    // Alternate the order between reps, so neither method always runs on a warmer machine.
    const order = rep % 2 === 0 ? METHODS : [...METHODS].reverse()
    for (const method of order) {
      log(`rep ${rep}: ${method}`)
      const r = method === 'peerglance' ? await runPeerglance(work, image, rep) : await runBitTorrent(work, image, torrent, infoHash, rep)
      results.push(r)
      log(`rep ${rep}: ${method}: slowest ${fmt(Math.max(...r.done), 1)} s (${fmt(Math.max(...r.done) / b, 2)}x bound), seed egress ${fmt(r.seedTx / SIZE, 3)} S, ${fmt((r.cpu.user + r.cpu.sys) / (N * SIZE / GiB), 2)} CPU-s/GiB`)
    }
  }
  console.log(mdTable(
    ['method', 'slowest host s', 'hosts done at s', 'slowest ÷ bound', 'seed egress ÷ S (chunk payload)', 'CPU-s (user, sys)', 'CPU-s per GiB delivered', 'CPU % ours / machine', 'load 1/5/15 after'],
    results.map(r => row(r, b))
  ))
  const per = (m: string, f: (r: Result) => number): number => median(results.filter(r => r.method === m).map(f))
  if (METHODS.length === 2) {
    const slow = (r: Result): number => Math.max(...r.done)
    const cpuGiB = (r: Result): number => (r.cpu.user + r.cpu.sys) / (N * SIZE / GiB)
    console.log(`\npeerglance ÷ bittorrent (medians): slowest host ${fmt(per('peerglance', slow) / per('bittorrent', slow), 2)}, CPU-s per GiB ${fmt(per('peerglance', cpuGiB) / per('bittorrent', cpuGiB), 2)}, seed egress ${fmt(per('peerglance', r => r.seedTx) / per('bittorrent', r => r.seedTx), 2)}`)
  }
  console.log('\nSeed egress counts every byte h0\'s link sent (headers, gossip, tracker replies included). CPU counts the agents (peerglance; not the curls) or aria2c and opentracker (bittorrent), user and kernel time charged to those processes.')
})
