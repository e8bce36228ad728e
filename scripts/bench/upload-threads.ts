// Where an upload's CPU goes: the real agent receives a page-cached file (`curl -T`) BENCH_REPS
// times after one untimed warm-up; each upload prints the agent's CPU-seconds per GiB, user and
// kernel, and context switches per GiB (voluntary+involuntary), by thread (from
// /proc/<pid>/task/*/stat and status), and its RSS before the upload and at its peak (sampled
// every 50 ms). With BENCH_STRACE=1 the first timed one runs under `strace -c -f` (syscall counts
// and time, printed after it). The image is deleted after each upload so that the next writes
// every chunk again. Not a ratio benchmark (upload.ts is): a profile to compare steps by, run on
// the same machine.
//
//   node scripts/bench/upload-threads.ts
//   BENCH_SIZE_MIB=1024 BENCH_REPS=3 BENCH_STRACE=1 node scripts/bench/upload-threads.ts
//   BENCH_TRACE_GC=1 BENCH_REPS=8 node scripts/bench/upload-threads.ts   (collections per upload)
//   BENCH_PERF=1 BENCH_REPS=1 node scripts/bench/upload-threads.ts   (`perf record` of the first timed
//   upload, by CPU time; the agent gets --perf-basic-prof so JavaScript frames have names)
import { spawn, spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomFile, spawnAgent } from '@peerglance/testing'
import { createImage, curl, deleteImage, envInt, fitSize, GiB, log, MiB, printHeader, runBench, startAgent, workDir } from './lib.ts'

const BIN = new URL('../../packages/agent/bin/peerglance.js', import.meta.url).pathname

/**
 * The agent under `node --trace-gc` (not allowed in NODE_OPTIONS), with its non-JSON output
 * (the trace) collected: what `gcLines` returns since the last call.
 */
async function tracedAgent (cleanup: Parameters<Parameters<typeof runBench>[0]>[0], dataDir: string): Promise<{ url: string, pid: number, gcLines: () => string[] }> {
  const agent = await spawnAgent({ dataDir, prefix: [process.execPath], bin: ['--trace-gc', BIN] })
  cleanup.add(async () => { await agent.kill('SIGTERM') })
  let lines: string[] = []
  agent.process.stdout?.on('data', (d: Buffer) => { for (const line of d.toString().split('\n')) if (line.includes('ms: ')) lines.push(line) })
  return { url: agent.url, pid: agent.process.pid as number, gcLines: () => lines.splice(0) }
}

const HZ = 100

/** Resident set size in MB (10^6 bytes, as scripts/bench/memory.ts counts). */
function rssMb (pid: number): number {
  const kb = Number(/^VmRSS:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
  return Math.round(kb * 1024 / 1e6)
}

interface Cpu { name: string, user: number, sys: number, voluntary: number, involuntary: number }

/** User and kernel CPU-seconds and context switches of each thread, by thread id. */
function threadTimes (pid: number): Map<string, Cpu> {
  const out = new Map<string, Cpu>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')
      const switches = (field: string): number => Number(new RegExp(`^${field}:\\s*(\\d+)`, 'm').exec(status)?.[1] ?? 0)
      out.set(tid, { name, user: Number(f[11]) / HZ, sys: Number(f[12]) / HZ, voluntary: switches('voluntary_ctxt_switches'), involuntary: switches('nonvoluntary_ctxt_switches') })
    } catch {}
  }
  return out
}

/**
 * Per thread name (the event loop's thread is named after the binary: MainThread), what was spent
 * between the two readings. Voluntary switches are the thread going to sleep (each one a wake-up
 * later); involuntary ones are preemptions, which other load on the machine adds to.
 */
function byName (before: Map<string, Cpu>, after: Map<string, Cpu>): Map<string, Omit<Cpu, 'name'>> {
  const out = new Map<string, Omit<Cpu, 'name'>>()
  for (const [tid, a] of after) {
    const b = before.get(tid) ?? { user: 0, sys: 0, voluntary: 0, involuntary: 0 }
    const name = a.name === 'node' ? 'MainThread' : a.name
    const sum = out.get(name) ?? { user: 0, sys: 0, voluntary: 0, involuntary: 0 }
    sum.user += a.user - b.user
    sum.sys += a.sys - b.sys
    sum.voluntary += a.voluntary - b.voluntary
    sum.involuntary += a.involuntary - b.involuntary
    out.set(name, sum)
  }
  return out
}

/** The profile by thread, then its top entries by thread, library and symbol, self time only. */
function perfReport (data: string): string {
  const report = (sort: string, limit: string): string => {
    const out = spawnSync('perf', ['report', '-i', data, '--stdio', '--no-children', '-g', 'none', '--percent-limit', limit, '--sort', sort], { encoding: 'utf8', maxBuffer: 64 * MiB })
    return out.stdout.split('\n').filter(l => l.trim() !== '' && !l.startsWith('#')).join('\n')
  }
  return `${report('comm,dso', '1')}\n\n${report('comm,dso,sym', '0.25')}`
}

await runBench(async cleanup => {
  const reps = envInt('BENCH_REPS', 3)
  const sizeMiB = await fitSize(envInt('BENCH_SIZE_MIB', 1024), 2)
  const strace = envInt('BENCH_STRACE', 0) === 1
  const perf = envInt('BENCH_PERF', 0) === 1
  if (perf) process.env.BENCH_AGENT_NODE_OPTIONS = `${process.env.BENCH_AGENT_NODE_OPTIONS ?? ''} --perf-basic-prof`.trim()
  printHeader(`Upload CPU by thread, ${sizeMiB} MiB page-cached file`, { BENCH_SIZE_MIB: sizeMiB, BENCH_REPS: reps, BENCH_STRACE: strace ? 1 : 0 })
  const dir = await workDir(cleanup, 'upload-threads')
  const file = join(dir, 'image.raw')
  await randomFile(file, sizeMiB * MiB)
  // BENCH_TRACE_GC=1: count the agent's scavenges and mark-compacts per upload, and why the latter ran.
  const traceGc = envInt('BENCH_TRACE_GC', 0) === 1
  const agent = traceGc ? await tracedAgent(cleanup, join(dir, 'agent')) : { ...await startAgent(cleanup, join(dir, 'agent')), gcLines: () => [] }
  const gib = sizeMiB * MiB / GiB

  for (let rep = -1; rep < reps; rep++) {
    const { id } = await createImage(agent.url, { name: `bench-upload-threads-${rep}` })
    let tracer: ReturnType<typeof spawn> | undefined
    let traced = ''
    if (strace && rep === 0) {
      tracer = spawn('strace', ['-c', '-f', '-p', String(agent.pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
      tracer.stderr?.on('data', (d: Buffer) => { traced += d.toString() })
      cleanup.add(() => { if (tracer?.exitCode == null) tracer?.kill('SIGKILL') })
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    let profiler: ReturnType<typeof spawn> | undefined
    const perfData = process.env.BENCH_PERF_DATA ?? join(dir, 'perf.data')
    if (perf && rep === 0) {
      profiler = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-g', '-o', perfData, '-p', String(agent.pid)], { stdio: 'ignore' })
      cleanup.add(() => { if (profiler?.exitCode == null) profiler?.kill('SIGKILL') })
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    agent.gcLines()
    const rssBefore = rssMb(agent.pid)
    let rssPeak = rssBefore
    const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssMb(agent.pid)) }, 50)
    const before = threadTimes(agent.pid)
    const r = await curl(['-T', file, '-H', 'content-type: application/octet-stream', '-o', '/dev/null', `${agent.url}/v2/images/${id}/file`])
    const threads = byName(before, threadTimes(agent.pid))
    clearInterval(sampler)
    if (tracer != null) {
      const closed = new Promise(resolve => tracer?.once('close', resolve))
      tracer.kill('SIGINT')
      await closed
    }
    if (profiler != null) {
      const closed = new Promise(resolve => profiler?.once('close', resolve))
      profiler.kill('SIGINT')
      await closed
    }
    if (r.httpCode !== 204) throw new Error(`upload answered ${r.httpCode}`)
    let user = 0
    let sys = 0
    const parts: string[] = []
    for (const [name, t] of threads) {
      user += t.user
      sys += t.sys
      if (t.user + t.sys > 0) parts.push(`${name} user ${(t.user / gib).toFixed(2)} sys ${(t.sys / gib).toFixed(2)} switches ${(t.voluntary / gib).toFixed(0)}+${(t.involuntary / gib).toFixed(0)}`)
    }
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0]
    console.log(`- ${rep < 0 ? 'warm-up' : `rep ${rep}`}: ${(sizeMiB / r.sec).toFixed(0)} MiB/s; agent CPU-s/GiB ${((user + sys) / gib).toFixed(2)} (user ${(user / gib).toFixed(2)}, sys ${(sys / gib).toFixed(2)}): ${parts.join(', ')}; RSS ${rssBefore} → peak ${rssPeak} MB; load ${load}`)
    if (traceGc) {
      const gcs = agent.gcLines()
      const reasons = new Map<string, number>()
      for (const line of gcs.filter(l => l.includes('Mark-Compact'))) {
        const reason = line.slice(line.lastIndexOf(')') + 1).trim()
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
      }
      console.log(`  GC: ${gcs.filter(l => l.includes('Scavenge')).length} scavenges, ${gcs.filter(l => l.includes('Mark-Compact')).length} mark-compacts${[...reasons].map(([r, n]) => `; ${n} × ${r}`).join('')}`)
    }
    if (profiler != null) console.log(`\n\`\`\`\n${perfReport(perfData)}\n\`\`\`\n`)
    if (traced !== '') console.log(`\n\`\`\`\n${traced.split('\n').filter(l => !l.startsWith('strace:')).join('\n')}\n\`\`\`\n`)
    await deleteImage(agent.url, id)
    log(`rep ${rep} done`)
  }
})
