// Shared helpers for the peerglance benchmarks (docs/benchmarks.md). Every server a benchmark
// starts is registered with a Cleanup and stopped in `finally`, and on SIGINT/SIGTERM.
import { randomBytes } from 'node:crypto'
import { execFile, execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readdir, rm, statfs, writeFile } from 'node:fs/promises'
import { readFileSync, readdirSync } from 'node:fs'
import { connect } from 'node:net'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { freePort, spawnAgent } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'

export const MiB = 1024 * 1024
export const GiB = 1024 * MiB
/** /proc times are in clock ticks; `getconf CLK_TCK` is 100 on Linux x86-64. */
const HZ = 100

// ---------------------------------------------------------------------------------------------
// Configuration and output

export function envInt (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw == null || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, not ${raw}`)
  return value
}

export function envList (name: string, fallback: number[]): number[] {
  const raw = process.env[name]
  if (raw == null || raw === '') return fallback
  return raw.split(',').map(s => Number(s.trim())).filter(n => Number.isFinite(n) && n > 0)
}

export function log (message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`)
}

export const fmt = (x: number | undefined, digits = 0): string => x == null || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits)

export function mdTable (headers: string[], rows: string[][]): string {
  return [
    `| ${headers.join(' | ')} |`,
    `|${headers.map(() => '---').join('|')}|`,
    ...rows.map(r => `| ${r.join(' | ')} |`)
  ].join('\n')
}

/** The heading every benchmark prints: what ran, where and when. */
export function printHeader (title: string, settings: Record<string, string | number>): void {
  const env = Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_')).map(([k, v]) => `${k}=${v} `).join('')
  console.log(`## ${title}\n`)
  console.log(`- command: \`${env}node ${process.argv.slice(1).map(a => a.replace(`${process.cwd()}/`, '')).join(' ')}\``)
  console.log(`- agent: commit ${gitCommit()}; date: ${new Date().toISOString()}; machine: ${cpus().length} vCPU (${cpus()[0]?.model ?? '?'}), ${fmt(totalmem() / GiB, 1)} GiB RAM; Node ${process.version}; curl ${curlVersion()}`)
  console.log(`- load average at start: ${loadavg().map(x => x.toFixed(2)).join(' ')}`)
  console.log(`- settings: ${Object.entries(settings).map(([k, v]) => `${k}=${v}`).join(', ')}\n`)
}

/** The commit measured, with `+dirty` when tracked files differ from it (read-only git commands). */
function gitCommit (): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'packages'], { encoding: 'utf8' }).trim() !== ''
    return `${head}${dirty ? '+dirty' : ''}`
  } catch {
    return 'unknown'
  }
}

function curlVersion (): string {
  try {
    return /curl (\S+)/.exec(execFileSync('curl', ['--version'], { encoding: 'utf8' }))?.[1] ?? '?'
  } catch {
    return 'not found'
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const n = s.length
  if (n === 0) return NaN
  return n % 2 === 1 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile (xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))]
}

// ---------------------------------------------------------------------------------------------
// Cleanup: servers, child processes and temp dirs go away on success, error and Ctrl-C.

export class Cleanup {
  readonly #tasks: Array<() => Promise<void> | void> = []
  #ran = false

  add (task: () => Promise<void> | void): void {
    this.#tasks.push(task)
  }

  async run (): Promise<void> {
    if (this.#ran) return
    this.#ran = true
    for (const task of this.#tasks.reverse()) {
      try {
        await task()
      } catch (err) {
        log(`cleanup step failed: ${(err as Error).message}`)
      }
    }
  }
}

/** Runs a benchmark; whatever happens, everything registered with the Cleanup is undone. */
export async function runBench (main: (cleanup: Cleanup) => Promise<void>): Promise<void> {
  const cleanup = new Cleanup()
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: cleaning up`)
    killChildren()
    void cleanup.run().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await main(cleanup)
  } catch (err) {
    process.exitCode = 1
    log(`failed: ${(err as Error).stack ?? String(err)}`)
  } finally {
    killChildren()
    await cleanup.run()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

/** A fresh directory under /tmp, deleted at cleanup. */
export async function workDir (cleanup: Cleanup, name: string): Promise<string> {
  const dir = await mkdtemp(join('/tmp', `peerglance-bench-${name}-`))
  cleanup.add(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** Bytes free on the file system holding `dir`. */
export async function freeBytes (dir: string): Promise<number> {
  const s = await statfs(dir)
  return s.bavail * s.bsize
}

/**
 * Scales an image size down when /tmp cannot hold `copies` copies of it (plus 2 GiB to spare);
 * says so on stderr and returns the size to use, in MiB.
 */
export async function fitSize (wantMiB: number, copies: number): Promise<number> {
  const free = await freeBytes('/tmp')
  const fits = Math.floor((free - 2 * GiB) / copies / MiB)
  if (fits >= wantMiB) return wantMiB
  if (fits < 64) throw new Error(`/tmp has only ${fmt(free / GiB, 1)} GiB free; need ${fmt(wantMiB * copies / 1024, 1)} GiB`)
  log(`/tmp has only ${fmt(free / GiB, 1)} GiB free: scaling ${wantMiB} MiB down to ${fits} MiB`)
  return fits
}

// ---------------------------------------------------------------------------------------------
// The agent

export interface BenchAgent {
  agent: SpawnedAgent
  url: string
  pid: number
  stop: () => Promise<void>
}

/**
 * The real `peerglance agent` in a child process on a free loopback port. BENCH_AGENT_NODE_OPTIONS
 * goes into its NODE_OPTIONS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`); SIGTERM lets it exit
 * cleanly so profiles get written.
 */
export async function startAgent (cleanup: Cleanup, dataDir: string, args: string[] = []): Promise<BenchAgent> {
  await mkdir(dataDir, { recursive: true })
  // BENCH_ENCRYPT=1: chunk files encrypted at rest (chunks.encryptionKeyFile), to measure its cost;
  // BENCH_WRITE_CONCURRENCY: chunks.writeConcurrency; BENCH_CHUNK_KIB: chunks.chunkSize in KiB.
  const chunks: string[] = []
  if (process.env.BENCH_ENCRYPT === '1') {
    const keyFile = `${dataDir}.chunk-key`
    await writeFile(keyFile, randomBytes(32).toString('hex'))
    chunks.push(`  encryptionKeyFile: ${keyFile}`)
  }
  if (process.env.BENCH_WRITE_CONCURRENCY != null) chunks.push(`  writeConcurrency: ${envInt('BENCH_WRITE_CONCURRENCY', 4)}`)
  if (process.env.BENCH_CHUNK_KIB != null) chunks.push(`  chunkSize: ${envInt('BENCH_CHUNK_KIB', 1024) * 1024}`)
  if (chunks.length > 0) {
    await writeFile(`${dataDir}.yaml`, `chunks:\n${chunks.join('\n')}\n`)
    args = ['--config', `${dataDir}.yaml`, ...args]
  }
  const saved = process.env.NODE_OPTIONS
  const extra = process.env.BENCH_AGENT_NODE_OPTIONS
  if (extra != null && extra !== '') process.env.NODE_OPTIONS = `${saved ?? ''} ${extra}`.trim()
  let agent: SpawnedAgent
  try {
    // Many agents starting at once on a busy 2-core machine can need longer (BENCH_START_TIMEOUT_MS).
    agent = await spawnAgent({ dataDir, args, timeoutMs: envInt('BENCH_START_TIMEOUT_MS', 60_000) })
  } finally {
    if (saved == null) delete process.env.NODE_OPTIONS
    else process.env.NODE_OPTIONS = saved
  }
  let stopped: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    stopped ??= (async () => {
      const timer = setTimeout(() => { agent.process.kill('SIGKILL') }, 30_000)
      await agent.kill('SIGTERM')
      clearTimeout(timer)
    })()
    await stopped
  }
  cleanup.add(stop)
  return { agent, url: agent.url, pid: agent.process.pid as number, stop }
}

export async function createImage (url: string, body: Record<string, unknown> = {}): Promise<{ id: string }> {
  const res = await fetch(`${url}/v2/images`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ disk_format: 'raw', container_format: 'bare', ...body })
  })
  if (res.status !== 201) throw new Error(`create image: ${res.status} ${await res.text()}`)
  return await res.json() as { id: string }
}

export async function getImage (url: string, id: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/v2/images/${id}`)
  if (res.status !== 200) throw new Error(`show image: ${res.status} ${await res.text()}`)
  return await res.json() as Record<string, unknown>
}

export async function deleteImage (url: string, id: string): Promise<void> {
  const res = await fetch(`${url}/v2/images/${id}`, { method: 'DELETE' })
  await res.arrayBuffer()
  if (res.status !== 204) throw new Error(`delete image: ${res.status}`)
}

/** Chunk files under the agent's data dir (all fan-out directories). */
export async function countChunkFiles (dataDir: string): Promise<number> {
  const root = join(dataDir, 'chunks', 'chunks')
  let n = 0
  for (const sub of await readdir(root).catch(() => [] as string[])) n += (await readdir(join(root, sub)).catch(() => [] as string[])).length
  return n
}

// ---------------------------------------------------------------------------------------------
// CPU, load and memory from /proc

/** utime + stime of one process (all its threads), in seconds; 0 once it is gone. */
export function processCpu (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / HZ
  } catch {
    return 0
  }
}

/** CPU seconds of a process and its direct children (nginx master + workers). */
export function processTreeCpu (pid: number): number {
  let total = 0
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(d) === pid || Number(f[1]) === pid) total += (Number(f[11]) + Number(f[12])) / HZ
    } catch {}
  }
  return total
}

/** CPU seconds per thread of a process, keyed by tid, with the thread's name. */
export function threadCpu (pid: number): Map<string, { name: string, sec: number }> {
  const out = new Map<string, { name: string, sec: number }>()
  let tids: string[] = []
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(tid, { name, sec: (Number(f[11]) + Number(f[12])) / HZ })
    } catch {}
  }
  return out
}

/**
 * CPU seconds spent per kind of thread between two snapshots: MainThread (event loop, HTTP,
 * per-chunk sha256), WorkerThread (the md5/sha512 workers), libuv-worker (fs calls incl.
 * fdatasync), V8Worker (GC, compiler), other.
 */
export function threadCpuDelta (before: Map<string, { name: string, sec: number }>, after: Map<string, { name: string, sec: number }>): Record<string, number> {
  const out: Record<string, number> = { MainThread: 0, WorkerThread: 0, 'libuv-worker': 0, V8Worker: 0, other: 0 }
  for (const [tid, t] of after) {
    const key = t.name in out ? t.name : 'other'
    out[key] += t.sec - (before.get(tid)?.sec ?? 0)
  }
  return out
}

/** `MainThread 45 % (0.41 s/GiB), ...`: CPU % of one core and, given the bytes moved, CPU seconds per GiB. */
export function formatThreads (perThread: Record<string, number>, sec: number, bytes?: number): string {
  return Object.entries(perThread).filter(([, v]) => v / sec >= 0.01)
    .map(([k, v]) => `${k} ${fmt(100 * v / sec)} %${bytes == null ? '' : ` (${fmt(v / (bytes / GiB), 2)} s/GiB)`}`).join(', ')
}

interface MachineCpu { busy: number, iowait: number, steal: number }

/** Busy CPU seconds of the whole machine, from the first line of /proc/stat. */
export function machineCpu (): MachineCpu {
  const [user, nice, system, , iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  return { busy: (user + nice + system + irq + softirq) / HZ, iowait: iowait / HZ, steal: (steal ?? 0) / HZ }
}

export interface Load {
  /** Whole machine busy, % of one core (200 = both cores). */
  machinePct: number
  /** The part of machinePct that is not the processes this benchmark started or ran. */
  othersPct: number
  iowaitPct: number
  load1: number
}

/**
 * What the rest of the machine did during a measurement: starts at construction, `end(ours)`
 * takes the CPU seconds of our own processes (agent, servers, clients, this process) over the
 * same interval. Loopback softirq work that the kernel does not charge to a process lands in
 * "others", so othersPct is an upper bound.
 */
export class LoadProbe {
  readonly #m0 = machineCpu()
  readonly #self0 = process.cpuUsage()
  readonly #t0 = performance.now()

  end (oursSec: number): Load {
    const m1 = machineCpu()
    const sec = (performance.now() - this.#t0) / 1000
    const self = process.cpuUsage(this.#self0)
    const selfSec = (self.user + self.system) / 1e6
    const busy = m1.busy - this.#m0.busy
    return {
      machinePct: 100 * busy / sec,
      othersPct: Math.max(0, 100 * (busy - oursSec - selfSec) / sec),
      iowaitPct: 100 * (m1.iowait - this.#m0.iowait) / sec,
      load1: loadavg()[0]
    }
  }
}

export interface Memory {
  rssKiB: number
  /** Peak RSS since start or the last resetPeakRss. */
  hwmKiB: number
  /** Private memory (heap, buffers, stacks); RSS minus this is mostly the node binary's pages. */
  anonKiB: number
  /** File-backed pages, shared with every other node process and reclaimable. */
  fileKiB: number
}

export function processMemory (pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM'), anonKiB: kib('RssAnon'), fileKiB: kib('RssFile') }
}

/** Resets VmHWM to the current RSS (Linux clear_refs value 5); false when not permitted. */
export async function resetPeakRss (pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** Samples VmRSS and RssAnon every `intervalMs` until stopped (KiB). */
export function sampleRss (pid: number, intervalMs = 100): { stop: () => { rss: number[], anon: number[] } } {
  const rss: number[] = []
  const anon: number[] = []
  const take = (): void => {
    try {
      const m = processMemory(pid)
      rss.push(m.rssKiB)
      anon.push(m.anonKiB)
    } catch {}
  }
  take()
  const timer = setInterval(take, intervalMs)
  return { stop: () => { clearInterval(timer); take(); return { rss, anon } } }
}

/** Bytes this process has caused to be written to storage so far (/proc/<pid>/io write_bytes). */
export function processWriteBytes (pid: number): number {
  try {
    return Number(/^write_bytes: (\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? NaN)
  } catch {
    return NaN
  }
}

// ---------------------------------------------------------------------------------------------
// Client processes: curl and friends, timed by /usr/bin/time for their CPU cost

const children = new Set<ChildProcess>()

export interface Timed {
  stdout: string
  stderr: string
  /** Wall-clock seconds from spawn to exit. */
  sec: number
  /** user + sys CPU seconds of the command. */
  cpuSec: number
  maxRssKiB: number
}

/** Runs a command under /usr/bin/time; rejects on a non-zero exit. */
export async function timed (cmd: string, args: string[]): Promise<Timed> {
  return await new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = execFile('/usr/bin/time', ['-f', '__TIME__ %U %S %M', cmd, ...args], { maxBuffer: 64 * MiB }, (err, stdout, stderr) => {
      children.delete(child)
      const sec = (performance.now() - t0) / 1000
      const m = /__TIME__ ([\d.]+) ([\d.]+) (\d+)/.exec(stderr)
      if (err != null) {
        reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message} ${stderr.replace(/__TIME__.*/, '').trim()}`))
        return
      }
      resolve({ stdout, stderr: stderr.replace(/.*__TIME__.*\n?/, ''), sec, cpuSec: m == null ? NaN : Number(m[1]) + Number(m[2]), maxRssKiB: m == null ? NaN : Number(m[3]) })
    })
    children.add(child)
  })
}

/** Kills any client still running (each by its own pid). */
export function killChildren (): void {
  for (const child of children) if (child.exitCode == null) child.kill('SIGKILL')
}

export interface CurlResult extends Timed {
  httpCode: number
  sizeDownload: number
  sizeUpload: number
  /** curl's own time_total, seconds. */
  timeTotal: number
}

/** curl -s -S with `-w %{json}`; the body goes where `args` say (pass `-o /dev/null`). */
export async function curl (args: string[]): Promise<CurlResult> {
  const r = await timed('curl', ['-s', '-S', '-w', '%{json}', ...args])
  const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('{"'))) as Record<string, number>
  return { ...r, httpCode: json.http_code, sizeDownload: json.size_download, sizeUpload: json.size_upload, timeTotal: json.time_total }
}

// ---------------------------------------------------------------------------------------------
// Reference servers

/**
 * A small Node server (CommonJS source run with `node -e`) in a child process; it must print its
 * port on the first line of stdout. Stopped with SIGTERM at cleanup.
 */
export async function startNodeServer (cleanup: Cleanup, source: string, args: string[] = []): Promise<{ url: string, pid: number }> {
  const child = spawn(process.execPath, ['-e', source, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  cleanup.add(async () => {
    if (child.exitCode != null || child.signalCode != null) return
    child.kill('SIGTERM')
    await exited
  })
  const port = await new Promise<string>((resolve, reject) => {
    let buf = ''
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      if (buf.includes('\n')) resolve(buf.split('\n')[0].trim())
    })
    void exited.then(() => { reject(new Error(`reference server exited with ${child.exitCode}`)) })
  })
  return { url: `http://127.0.0.1:${port}`, pid: child.pid as number }
}

// ---------------------------------------------------------------------------------------------
// nginx

async function waitForPort (port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>(resolve => {
      const s = connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => { resolve(false) })
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

export interface Nginx {
  url: string
  pid: number
  /** CPU seconds of the master and its workers. */
  cpu: () => number
  stop: () => Promise<void>
}

/**
 * nginx (Debian nginx-light) serving `root` on a free 127.0.0.1 port from its own prefix under
 * `prefixDir`, configured as in p2p-perf REPORT.md section 7: sendfile on, tcp_nopush, no access
 * log, worker_processes auto (one per core).
 */
export async function startNginx (cleanup: Cleanup, prefixDir: string, root: string): Promise<Nginx> {
  await mkdir(join(prefixDir, 'tmp'), { recursive: true })
  // Workers run as `nobody` when the master is root: they must be able to read the served files.
  await chmod(root, 0o755)
  for (const name of await readdir(root)) await chmod(join(root, name), 0o644)
  let dir = root
  while (dir !== '/' && dir !== '') {
    dir = join(dir, '..')
    if (dir.startsWith('/tmp/')) await chmod(dir, 0o755)
  }
  const port = await freePort()
  const tmp = join(prefixDir, 'tmp')
  const conf = join(prefixDir, 'nginx.conf')
  await writeFile(conf, `# Generated by scripts/bench/lib.ts: loopback only, sendfile on, no access log.
worker_processes auto;
pid ${join(prefixDir, 'nginx.pid')};
error_log ${join(prefixDir, 'error.log')} warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path ${tmp};
  proxy_temp_path ${tmp};
  fastcgi_temp_path ${tmp};
  uwsgi_temp_path ${tmp};
  scgi_temp_path ${tmp};
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`)
  const child = spawn('/usr/sbin/nginx', ['-p', prefixDir, '-e', join(prefixDir, 'error.log'), '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'inherit', 'inherit'] })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  const pid = child.pid as number
  const workers = (): number[] => readdirSync('/proc').filter(d => /^\d+$/.test(d)).filter(d => {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid
    } catch {
      return false
    }
  }).map(Number)
  let stopped: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    stopped ??= (async () => {
      if (child.exitCode != null || child.signalCode != null) return
      const own = workers()
      child.kill('SIGTERM') // fast shutdown: the master ends its workers, then itself
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        for (const w of own) try { process.kill(w, 'SIGKILL') } catch {}
      }, 10_000)
      await exited
      clearTimeout(timer)
    })()
    await stopped
  }
  cleanup.add(stop)
  await Promise.race([waitForPort(port, 10_000), exited.then(() => { throw new Error(`nginx exited at start; see ${join(prefixDir, 'error.log')}`) })])
  return { url: `http://127.0.0.1:${port}`, pid, cpu: () => processTreeCpu(pid), stop }
}

export { freePort }
