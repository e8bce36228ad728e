// (b) Uploading an image to the agent (PUT /v2/images/{id}/file with curl -T) against
// `sha512sum` of the same page-cached file. Target: the agent reaches >= 0.8 of sha512sum's rate
// (the real Glance reaches 0.35-0.45). Each upload goes to a freshly created image, which is
// deleted afterwards so that the next upload writes every chunk again (the store deduplicates).
// `md5sum` of the same file runs as a reference: Glance's checksum is an md5 of the whole image,
// which cannot be split across cores, so its single-core rate bounds any upload.
//
//   node scripts/bench/upload.ts
//   BENCH_SIZE_MIB=1024 BENCH_REPS=3 BENCH_CHUNKED=1 node scripts/bench/upload.ts
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { join } from 'node:path'
import { randomFile } from '@peerglance/testing'
import {
  LoadProbe, countChunkFiles, createImage, curl, deleteImage, envInt, fitSize, fmt, formatThreads, getImage, log, mdTable,
  median, MiB, GiB, printHeader, processCpu, processWriteBytes, runBench, startAgent, threadCpu, threadCpuDelta, timed, workDir
} from './lib.ts'
import type { Load } from './lib.ts'

const TARGET = 0.8

type Variant = 'sha512sum' | 'md5sum (reference)' | 'agent, Content-Length' | 'agent, chunked'

interface Run {
  variant: Variant
  rep: number
  mibps: number
  sec: number
  /** CPU % of the process doing the work (sha512sum, or the agent with all its threads). */
  workCpuPct: number
  curlCpuPct: number
  threads: string
  writtenMiB: number
  load: Load
}

await runBench(async cleanup => {
  const reps = envInt('BENCH_REPS', 3)
  const chunked = envInt('BENCH_CHUNKED', 1) === 1
  // The source file and the agent's chunk copy of it.
  const sizeMiB = await fitSize(envInt('BENCH_SIZE_MIB', 1024), 2)
  const size = sizeMiB * MiB
  printHeader(`Upload: agent vs sha512sum, ${sizeMiB} MiB page-cached file`, { BENCH_SIZE_MIB: sizeMiB, BENCH_REPS: reps, BENCH_CHUNKED: chunked ? 1 : 0 })

  const dir = await workDir(cleanup, 'upload')
  const file = join(dir, 'image.raw')
  log(`writing ${sizeMiB} MiB of random data to ${file}`)
  await randomFile(file, size)
  // Reading it once puts it in the page cache for every variant; the digest checks the agent's.
  const hash = createHash('sha512')
  for await (const part of createReadStream(file, { highWaterMark: MiB })) hash.update(part as Buffer)
  const sha512 = hash.digest('hex')

  const dataDir = join(dir, 'agent')
  const agent = await startAgent(cleanup, dataDir)

  const upload = async (variant: Variant, rep: number): Promise<Run> => {
    const { id } = await createImage(agent.url, { name: `bench-upload-${rep}` })
    const headers = ['-H', 'content-type: application/octet-stream', ...variant === 'agent, chunked' ? ['-H', 'transfer-encoding: chunked'] : []]
    const cpu0 = processCpu(agent.pid)
    const threads0 = threadCpu(agent.pid)
    const written0 = processWriteBytes(agent.pid)
    const probe = new LoadProbe()
    const r = await curl(['-T', file, ...headers, '-o', '/dev/null', `${agent.url}/v2/images/${id}/file`])
    const agentCpu = processCpu(agent.pid) - cpu0
    const load = probe.end(agentCpu + r.cpuSec)
    // curl counts the chunked framing in size_upload, so the image's size is what is checked.
    if (r.httpCode !== 204 || r.sizeUpload < size) throw new Error(`${variant}: ${r.httpCode} after ${r.sizeUpload} bytes`)
    const image = await getImage(agent.url, id)
    if (image.status !== 'active' || image.size !== size || image.os_hash_value !== sha512) throw new Error(`${variant}: image ${image.status} ${String(image.size)} ${String(image.os_hash_value)}`)
    const threads = formatThreads(threadCpuDelta(threads0, threadCpu(agent.pid)), r.sec, size)
    const written = processWriteBytes(agent.pid) - written0
    await deleteImage(agent.url, id)
    const left = await countChunkFiles(dataDir)
    if (left !== 0) throw new Error(`${left} chunk files left after deleting the image: later uploads would be deduplicated`)
    return { variant, rep, mibps: size / MiB / r.sec, sec: r.sec, workCpuPct: 100 * agentCpu / r.sec, curlCpuPct: 100 * r.cpuSec / r.sec, threads, writtenMiB: written / MiB, load }
  }

  const checksum = async (variant: 'sha512sum' | 'md5sum (reference)', rep: number): Promise<Run> => {
    const probe = new LoadProbe()
    const r = await timed(variant === 'sha512sum' ? 'sha512sum' : 'md5sum', [file])
    const load = probe.end(r.cpuSec)
    if (variant === 'sha512sum' && !r.stdout.startsWith(sha512)) throw new Error(`sha512sum disagrees: ${r.stdout}`)
    return { variant, rep, mibps: size / MiB / r.sec, sec: r.sec, workCpuPct: 100 * r.cpuSec / r.sec, curlCpuPct: NaN, threads: '', writtenMiB: 0, load }
  }

  // Untimed: starts the hash workers and warms the JIT.
  await upload('agent, Content-Length', -1)

  const md5sum = envInt('BENCH_MD5SUM', 1) === 1
  const variants: Variant[] = ['sha512sum', ...md5sum ? ['md5sum (reference)' as const] : [], 'agent, Content-Length', ...chunked ? ['agent, chunked' as const] : []]
  const runs: Run[] = []
  for (let rep = 0; rep < reps; rep++) {
    // Rotate the order so that no variant always runs first or last.
    const order = variants.map((_, i) => variants[(i + rep) % variants.length])
    for (const variant of order) {
      const run = variant === 'sha512sum' || variant === 'md5sum (reference)' ? await checksum(variant, rep) : await upload(variant, rep)
      runs.push(run)
      log(`rep ${rep} ${variant}: ${fmt(run.mibps)} MiB/s in ${fmt(run.sec, 2)} s, CPU ${fmt(run.workCpuPct)} %${run.threads === '' ? '' : ` (${run.threads})`}${Number.isNaN(run.curlCpuPct) ? '' : `, curl ${fmt(run.curlCpuPct)} %`}, written ${fmt(run.writtenMiB)} MiB, machine ${fmt(run.load.machinePct)} %, others ${fmt(run.load.othersPct)} %, iowait ${fmt(run.load.iowaitPct)} %, load ${run.load.load1.toFixed(2)}`)
    }
  }

  const base = median(runs.filter(r => r.variant === 'sha512sum').map(r => r.mibps))
  const rows = variants.map(variant => {
    const rs = runs.filter(r => r.variant === variant)
    const m = median(rs.map(r => r.mibps))
    const paired = rs.map(r => r.mibps / (runs.find(b => b.variant === 'sha512sum' && b.rep === r.rep)?.mibps ?? NaN))
    return [
      variant === 'sha512sum' ? 'sha512sum (baseline)' : variant,
      fmt(m), rs.map(r => fmt(r.mibps)).join(', '), fmt(m / base, 2), paired.map(x => fmt(x, 2)).join(', '),
      fmt(median(rs.map(r => r.workCpuPct))), fmt(median(rs.map(r => r.workCpuPct / 100 * r.sec / (size / GiB))), 2), variant.startsWith('agent') ? fmt(median(rs.map(r => r.curlCpuPct))) : '–',
      rs.map(r => fmt(r.load.othersPct)).join(', '), rs.map(r => fmt(r.load.iowaitPct)).join(', '), rs.map(r => r.load.load1.toFixed(1)).join(', ')
    ]
  })
  console.log(mdTable(['variant', 'MiB/s (median)', 'all runs', 'ratio vs sha512sum (medians)', 'ratio per rep', 'CPU % (of the tool / the agent)', 'CPU s per GiB', 'curl CPU %', 'others\' CPU % per run', 'iowait % per run', 'load avg per run'], rows))
  console.log(`\nAgent CPU by thread, % of a core and CPU s per GiB uploaded (MainThread = HTTP + per-chunk sha256; WorkerThread = the md5 and sha512 workers; libuv-worker = chunk writes + fdatasync; V8Worker = GC helpers):\n${runs.filter(r => r.variant.startsWith('agent')).map(r => `  - ${r.variant}, rep ${r.rep}: ${r.threads}; ${fmt(r.writtenMiB)} MiB written to disk`).join('\n')}`)
  console.log(`\n${variants.filter(v => v.startsWith('agent')).map(v => {
    const ratio = median(runs.filter(r => r.variant === v).map(r => r.mibps)) / base
    return `- ${v}: agent/sha512sum = ${fmt(ratio, 2)} (target ≥ ${TARGET}): ${ratio >= TARGET ? 'met' : `missed by ${fmt(100 * (TARGET - ratio) / TARGET)} %`}`
  }).join('\n')}\n`)
  console.log('CPU % is of one core (the machine has 200). "others" = whole machine busy minus the agent or tool, curl and this process (upper bound: includes softirq).\n')
})
