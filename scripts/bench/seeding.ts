// (8b, 8d) Seeding: one seed agent and N downloader agents (separate Node processes, loopback)
// all start reading one image at the same moment; each downloader streams it and keeps every
// chunk in its own FsChunkStore. Reported: the seed's egress / image size (target <= 1.05), the
// time until every downloader holds the whole image, and peak RSS per agent. Baseline in the same
// run: N curl clients pulling the same bytes at once from one central node:http server (1 MiB
// reads; REPORT.md section 7), whose egress is N copies by construction.
//
//   node scripts/bench/seeding.ts
//   BENCH_SIZE_MIB=1024 BENCH_DOWNLOADERS=8 BENCH_REPS=1 node scripts/bench/seeding.ts
//   BENCH_AGENT_FLAGS='--external-memory-accounted-in-global-limit' (the default; '' for none)
import { execFile } from 'node:child_process'
import { createReadStream, createWriteStream, statSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Manifest } from '@peerglance/interface'
import { FsChunkStore } from '@peerglance/chunk-store'
import { createMesh } from '@peerglance/mesh'
import { child, children, commands, cpuSec, fmt, machineBusy, median, MiB, peakRssMiB, reply, seedChunks } from './p2p-lib.ts'
import type { Child } from './p2p-lib.ts'

const SELF = fileURLToPath(import.meta.url)
const TARGET = 1.05

async function seedRole (dir: string, mib: number, file: string): Promise<void> {
  const store = new FsChunkStore({ dir: join(dir, 'chunks') })
  await store.start()
  const manifestFile = join(dir, 'manifest.json')
  const manifest = await seedChunks(store, manifestFile, mib)
  // The same bytes as one plain file, for the central-server baseline.
  let size = -1
  try {
    size = statSync(file).size
  } catch {}
  if (size !== manifest.size) {
    const out = createWriteStream(file)
    for await (const part of store.read(manifest, 0, manifest.size - 1)) {
      if (!out.write(part)) await new Promise<void>(resolve => out.once('drain', () => { resolve() }))
    }
    await new Promise<void>(resolve => out.end(() => { resolve() }))
  }
  const mesh = await createMesh({ chunks: store, getManifestBytes: async () => undefined }, { dataDir: dir })
  await mesh.start()
  reply({ ready: true, addr: mesh.multiaddrs[0], manifestFile })
  await commands(async cmd => {
    if (cmd.op === 'stats') reply({ stats: mesh.metrics.totals, served: mesh.exchange.stats, peers: mesh.connectedPeers().length })
  })
  await mesh.stop()
  await store.stop()
}

async function downloaderRole (dir: string, seedAddr: string, manifestFile: string): Promise<void> {
  const manifest = JSON.parse(await (await import('node:fs/promises')).readFile(manifestFile, 'utf8')) as Manifest
  const store = new FsChunkStore({ dir: join(dir, 'chunks') })
  await store.start()
  const mesh = await createMesh({ chunks: store, getManifestBytes: async () => undefined }, { dataDir: dir, bootstrap: [seedAddr] })
  await mesh.start()
  reply({ ready: true, peerId: mesh.peerId })
  await commands(async cmd => {
    if (cmd.op === 'peers') {
      reply({ peers: mesh.connectedPeers() })
      return
    }
    if (cmd.op !== 'go') return
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    let bytes = 0
    for await (const part of mesh.reader.read('bench-image', manifest, 0, manifest.size - 1)) bytes += part.byteLength
    const readMs = performance.now() - t0
    while (await mesh.localShare(manifest) < 1) await new Promise(resolve => setTimeout(resolve, 20))
    reply({ done: true, bytes, readMs, ms: performance.now() - t0, cpu: cpuSec(c0), totals: mesh.metrics.totals, reasons: mesh.swarm.fetchReasons })
  })
  await mesh.stop()
  await store.stop()
}

/** The central server: node:http streaming the file with 1 MiB reads to whoever asks. */
async function httpRole (file: string): Promise<void> {
  const size = statSync(file).size
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
    createReadStream(file, { highWaterMark: MiB }).pipe(res)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  reply({ ready: true, port: (server.address() as { port: number }).port })
  await commands(async () => {})
  server.close()
}

async function curlAll (url: string, n: number): Promise<number> {
  const t0 = performance.now()
  await Promise.all(Array.from({ length: n }, async () => {
    await new Promise<void>((resolve, reject) => {
      execFile('curl', ['-sS', '-o', '/dev/null', '--fail', url], err => { if (err != null) reject(err); else resolve() })
    })
  }))
  return (performance.now() - t0) / 1000
}

interface P2pRun { sec: number, egress: number, seedCpu: number, downCpu: number[], rss: number[], seedRss: number, othersPct: number, readSec: number[], reasons: Record<string, number> }

async function runP2p (work: string, rep: number, mib: number, n: number, flags: string[], file: string): Promise<P2pRun> {
  const seed = child(SELF, ['seed', join(work, 'seed'), String(mib), file], flags)
  const downs: Child[] = []
  try {
    const { addr, manifestFile } = await seed.next(m => m.ready === true, 1_200_000)
    for (let i = 0; i < n; i++) downs.push(child(SELF, ['down', join(work, `down-${rep}-${i}`), addr, manifestFile], flags))
    const ids = (await Promise.all(downs.map(async d => await d.next(m => m.ready === true)))).map(m => m.peerId as string)
    // Let peer exchange connect the downloaders to each other before the clock starts.
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline) {
      const views = await Promise.all(downs.map(async d => { d.send({ op: 'peers' }); return (await d.next(m => m.peers != null)).peers as string[] }))
      if (views.every((peers, i) => ids.every((id, j) => i === j || peers.includes(id)))) break
      await new Promise(resolve => setTimeout(resolve, 250))
    }
    seed.send({ op: 'cpu' })
    const s0 = (await seed.next(m => m.cpu != null)).cpu as number
    const b0 = machineBusy()
    const t0 = performance.now()
    for (const d of downs) d.send({ op: 'go' })
    const results = await Promise.all(downs.map(async d => await d.next(m => m.done === true, 1_800_000)))
    const sec = (performance.now() - t0) / 1000
    const b1 = machineBusy()
    seed.send({ op: 'cpu' })
    const s1 = (await seed.next(m => m.cpu != null)).cpu as number
    seed.send({ op: 'stats' })
    const { stats } = await seed.next(m => m.stats != null)
    const size = mib * MiB
    for (const r of results) if (r.bytes !== size) throw new Error(`a downloader read ${r.bytes} of ${size} bytes`)
    const downCpu = results.map(r => r.cpu as number)
    return {
      sec,
      egress: stats.bytesSent / size,
      seedCpu: s1 - s0,
      downCpu,
      rss: downs.map(d => peakRssMiB(d.proc.pid!)),
      seedRss: peakRssMiB(seed.proc.pid!),
      othersPct: Math.max(0, 100 * ((b1 - b0) - (s1 - s0) - downCpu.reduce((a, b) => a + b, 0)) / sec),
      readSec: results.map(r => r.readMs / 1000),
      reasons: results.reduce((all: Record<string, number>, r) => {
        for (const [k, v] of Object.entries(r.reasons as Record<string, number>)) all[k] = (all[k] ?? 0) + v
        return all
      }, {})
    }
  } finally {
    await Promise.all(downs.map(async d => { await d.exit() }))
    await seed.exit()
    for (let i = 0; i < n; i++) await rm(join(work, `down-${rep}-${i}`), { recursive: true, force: true })
  }
}

async function main (): Promise<void> {
  const mib = Number(process.env.BENCH_SIZE_MIB ?? 1024)
  const n = Number(process.env.BENCH_DOWNLOADERS ?? 8)
  const reps = Number(process.env.BENCH_REPS ?? 1)
  const flags = (process.env.BENCH_AGENT_FLAGS ?? '--external-memory-accounted-in-global-limit').split(/\s+/).filter(f => f !== '')
  const work = process.env.BENCH_KEEP_DIR ?? await mkdtemp(join(tmpdir(), 'peerglance-bench-seeding-'))
  const file = join(work, 'image.raw')
  const cleanup = async (): Promise<void> => {
    for (const proc of children) proc.kill('SIGKILL')
    if (process.env.BENCH_KEEP_DIR == null) await rm(work, { recursive: true, force: true })
  }
  process.once('SIGINT', () => { void cleanup().finally(() => process.exit(130)) })
  console.log(`## Seeding: 1 seed + ${n} downloaders, ${mib} MiB image, vs ${n} curl clients on one node:http server\n`)
  console.log(`- command: \`BENCH_SIZE_MIB=${mib} BENCH_DOWNLOADERS=${n} BENCH_REPS=${reps} BENCH_AGENT_FLAGS='${flags.join(' ')}' node scripts/bench/seeding.ts\``)
  console.log(`- date: ${new Date().toISOString()}; ${cpus().length} vCPU; Node ${process.version}; load average at start ${loadavg().map(x => x.toFixed(2)).join(' ')}\n`)
  const p2p: P2pRun[] = []
  const http: number[] = []
  try {
    for (let rep = 0; rep < reps; rep++) {
      const run = await runP2p(work, rep, mib, n, flags, file)
      p2p.push(run)
      process.stderr.write(`[seeding] rep ${rep} p2p: ${fmt(run.sec, 1)} s, seed egress ${fmt(run.egress, 3)} x image, seed CPU ${fmt(run.seedCpu, 1)} s, downloader CPU ${run.downCpu.map(c => fmt(c, 1)).join(' ')} s, peak RSS seed ${fmt(run.seedRss)} / downloaders ${run.rss.map(r => fmt(r)).join(' ')} MiB, others ${fmt(run.othersPct)} %, chunk fetches by reason ${JSON.stringify(run.reasons)}\n`)
      const server = child(SELF, ['http', file])
      try {
        const { port } = await server.next(m => m.ready === true)
        const sec = await curlAll(`http://127.0.0.1:${port}/`, n)
        http.push(sec)
        process.stderr.write(`[seeding] rep ${rep} central server: ${fmt(sec, 1)} s for ${n} clients, egress ${n}.000 x image\n`)
      } finally {
        await server.exit()
      }
    }
  } finally {
    await cleanup()
  }
  console.log('| setup | total time s (median) | all runs | seed / server egress ÷ image size | peak RSS per agent MiB (median of max) |')
  console.log('|---|---|---|---|---|')
  console.log(`| p2p: 1 seed + ${n} agents | ${fmt(median(p2p.map(r => r.sec)), 1)} | ${p2p.map(r => fmt(r.sec, 1)).join(', ')} | ${fmt(median(p2p.map(r => r.egress)), 3)} (target <= ${TARGET}) | seed ${fmt(median(p2p.map(r => r.seedRss)))}, downloaders ${fmt(median(p2p.map(r => Math.max(...r.rss))))} |`)
  console.log(`| central node:http server, ${n} curl clients | ${fmt(median(http), 1)} | ${http.map(s => fmt(s, 1)).join(', ')} | ${n}.000 | - |`)
  console.log(`\nfirst byte to last byte per downloader read (s, last rep): ${p2p.at(-1)?.readSec.map(s => fmt(s, 1)).join(', ')}`)
}

const [role, ...args] = process.argv.slice(2)
switch (role) {
  case 'seed': await seedRole(args[0], Number(args[1]), args[2]); break
  case 'down': await downloaderRole(args[0], args[1], args[2]); break
  case 'http': await httpRole(args[0]); break
  default: await main()
}
if (role != null) process.exit(0)
