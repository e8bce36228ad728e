// (a) Downloading an image from the agent (GET /v2/images/{id}/file) against nginx serving the
// same bytes from a plain file with sendfile, both on 127.0.0.1, to 1 and 8 concurrent curls.
// Target: the agent reaches >= 0.9 of nginx's rate. A plain node:http server piping the file
// through fs.createReadStream with 1 MiB reads (p2p-perf REPORT.md section 7's best Node variant)
// runs alongside as a reference for what Node itself reaches here (BENCH_NODE_REF=0 skips it).
//
//   node scripts/bench/download.ts
//   BENCH_SIZE_MIB=1024 BENCH_REPS=3 BENCH_CLIENTS=1,8 node scripts/bench/download.ts
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { md5File, randomFile } from '@peerglance/testing'
import {
  LoadProbe, createImage, curl, envInt, envList, fitSize, fmt, formatThreads, getImage, log, mdTable, median,
  MiB, GiB, printHeader, processCpu, runBench, startAgent, startNginx, startNodeServer, threadCpu, threadCpuDelta, workDir
} from './lib.ts'
import type { CurlResult, Load } from './lib.ts'

const TARGET = 0.9

const NODE_REFERENCE = `
const http = require('node:http')
const fs = require('node:fs')
const { pipeline } = require('node:stream')
const file = process.argv[1]
const size = fs.statSync(file).size
const srv = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
  pipeline(fs.createReadStream(file, { highWaterMark: 1024 * 1024 }), res, () => {})
})
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port))
`

type Server = 'agent' | 'nginx' | 'node'
const LABEL: Record<Server, string> = {
  nginx: 'nginx 1.22 sendfile (baseline)',
  agent: 'peerglance agent',
  node: 'reference: node:http + createReadStream 1 MiB'
}

interface Run {
  server: Server
  clients: number
  rep: number
  mibps: number
  serverCpuPct: number
  serverCpuSecPerGiB: number
  curlCpuPct: number
  threads: string
  load: Load
}

await runBench(async cleanup => {
  const reps = envInt('BENCH_REPS', 3)
  const nodeRef = envInt('BENCH_NODE_REF', 1) === 1
  const clientCounts = envList('BENCH_CLIENTS', [1, 8])
  // The served file and the agent's chunk copy of it.
  const sizeMiB = await fitSize(envInt('BENCH_SIZE_MIB', 1024), 2)
  const size = sizeMiB * MiB
  printHeader(`Download: agent vs nginx, ${sizeMiB} MiB image, curl -> /dev/null`, { BENCH_SIZE_MIB: sizeMiB, BENCH_REPS: reps, BENCH_CLIENTS: clientCounts.join(','), BENCH_NODE_REF: nodeRef ? 1 : 0 })

  const dir = await workDir(cleanup, 'download')
  const serveDir = join(dir, 'www')
  await mkdir(serveDir)
  const file = join(serveDir, 'image.raw')
  log(`writing ${sizeMiB} MiB of random data to ${file}`)
  await randomFile(file, size)

  const agent = await startAgent(cleanup, join(dir, 'agent'))
  const { id } = await createImage(agent.url, { name: 'bench-download' })
  const up = await curl(['-T', file, '-H', 'content-type: application/octet-stream', '-o', '/dev/null', `${agent.url}/v2/images/${id}/file`])
  if (up.httpCode !== 204) throw new Error(`upload answered ${up.httpCode}`)
  log(`uploaded to the agent at ${fmt(size / MiB / up.sec)} MiB/s (setup, not measured)`)
  const image = await getImage(agent.url, id)
  const md5 = await md5File(file) // also warms the page cache for nginx
  if (image.size !== size || image.checksum !== md5) throw new Error(`agent image ${JSON.stringify({ size: image.size, checksum: image.checksum })} is not the file (${size}, ${md5})`)

  const nginx = await startNginx(cleanup, join(dir, 'nginx'), serveDir)
  const reference = nodeRef ? await startNodeServer(cleanup, NODE_REFERENCE, [file]) : undefined
  const servers: Server[] = ['nginx', 'agent', ...reference == null ? [] : ['node' as const]]
  const urls: Record<Server, string> = { agent: `${agent.url}/v2/images/${id}/file`, nginx: `${nginx.url}/image.raw`, node: `${reference?.url ?? ''}/image.raw` }
  const serverCpu: Record<Server, () => number> = { agent: () => processCpu(agent.pid), nginx: () => nginx.cpu(), node: () => processCpu(reference?.pid ?? 0) }

  // One untimed download from each: warms the agent's chunk files, JIT and the servers.
  for (const server of servers) {
    const r = await curl(['-o', '/dev/null', urls[server]])
    if (r.httpCode !== 200 || r.sizeDownload !== size) throw new Error(`${server} warm-up: ${r.httpCode}, ${r.sizeDownload} bytes`)
  }

  const runs: Run[] = []
  for (let rep = 0; rep < reps; rep++) {
    for (const clients of clientCounts) {
      // Rotate which server goes first, so none always follows another's page-cache and load state.
      const shift = rep + clientCounts.indexOf(clients)
      const order = servers.map((_, i) => servers[(i + shift) % servers.length])
      for (const server of order) {
        const cpu0 = serverCpu[server]()
        const threads0 = server === 'agent' ? threadCpu(agent.pid) : undefined
        const probe = new LoadProbe()
        const t0 = performance.now()
        const results: CurlResult[] = await Promise.all(Array.from({ length: clients }, async () => await curl(['-o', '/dev/null', urls[server]])))
        const sec = (performance.now() - t0) / 1000
        const srvCpu = serverCpu[server]() - cpu0
        const curlCpu = results.reduce((a, r) => a + r.cpuSec, 0)
        const load = probe.end(srvCpu + curlCpu)
        for (const r of results) if (r.httpCode !== 200 || r.sizeDownload !== size) throw new Error(`${server}: ${r.httpCode}, ${r.sizeDownload} of ${size} bytes`)
        const bytes = results.reduce((a, r) => a + r.sizeDownload, 0)
        const threads = threads0 == null ? '' : formatThreads(threadCpuDelta(threads0, threadCpu(agent.pid)), sec, bytes)
        const run: Run = {
          server,
          clients,
          rep,
          mibps: bytes / MiB / sec,
          serverCpuPct: 100 * srvCpu / sec,
          serverCpuSecPerGiB: srvCpu / (bytes / GiB),
          curlCpuPct: 100 * curlCpu / sec,
          threads,
          load
        }
        runs.push(run)
        log(`rep ${rep} ${clients} x curl <- ${server}: ${fmt(run.mibps)} MiB/s, server CPU ${fmt(run.serverCpuPct)} %${threads === '' ? '' : ` (${threads})`}, curl CPU ${fmt(run.curlCpuPct)} %, machine ${fmt(load.machinePct)} %, others ${fmt(load.othersPct)} %, load ${load.load1.toFixed(2)}`)
      }
    }
  }

  const rows: string[][] = []
  const verdicts: string[] = []
  for (const clients of clientCounts) {
    const base = median(runs.filter(r => r.server === 'nginx' && r.clients === clients).map(r => r.mibps))
    for (const server of servers) {
      const rs = runs.filter(r => r.server === server && r.clients === clients)
      const m = median(rs.map(r => r.mibps))
      const paired = rs.map(r => r.mibps / (runs.find(b => b.server === 'nginx' && b.clients === clients && b.rep === r.rep)?.mibps ?? NaN))
      rows.push([
        `${clients} × curl`, LABEL[server],
        fmt(m), rs.map(r => fmt(r.mibps)).join(', '),
        fmt(m / base, 2), server === 'nginx' ? '1.00' : paired.map(x => fmt(x, 2)).join(', '),
        fmt(median(rs.map(r => r.serverCpuPct))), fmt(median(rs.map(r => r.serverCpuSecPerGiB)), 2),
        fmt(median(rs.map(r => r.curlCpuPct))),
        rs.map(r => fmt(r.load.othersPct)).join(', '), rs.map(r => r.load.load1.toFixed(1)).join(', ')
      ])
      if (server === 'agent') verdicts.push(`- ${clients} client(s): agent/nginx = ${fmt(m / base, 2)} (target ≥ ${TARGET}): ${m / base >= TARGET ? 'met' : `missed by ${fmt(100 * (TARGET - m / base) / TARGET)} %`}`)
      if (server === 'node') verdicts.push(`- ${clients} client(s): reference node:http/nginx = ${fmt(m / base, 2)}; agent/reference = ${fmt(median(runs.filter(r => r.server === 'agent' && r.clients === clients).map(r => r.mibps)) / m, 2)}`)
    }
  }
  console.log(mdTable(['clients', 'server', 'MiB/s (median, aggregate)', 'all runs', 'ratio vs nginx (medians)', 'ratio per rep', 'server CPU %', 'server CPU s per GiB', 'curl CPU %', 'others\' CPU % per run', 'load avg per run'], rows))
  const agentThreads = runs.filter(r => r.server === 'agent').map(r => `  - ${r.clients} × curl, rep ${r.rep}: ${r.threads}`)
  console.log(`\nAgent CPU by thread, % of a core and CPU s per GiB served (MainThread = event loop incl. socket writes; libuv-worker = chunk file open/read/close; V8Worker = GC helpers):\n${agentThreads.join('\n')}`)
  console.log(`\n${verdicts.join('\n')}\n`)
  console.log('CPU % is of one core (the machine has 200). "others" = whole machine busy minus agent/nginx, curl and this process; it includes loopback softirq not charged to a process, so it is an upper bound.\n')
})
