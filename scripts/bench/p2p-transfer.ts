// (8a) Agent-to-agent transfer of one image between two Node processes on loopback, against raw
// TCP between two Node processes in the same run. Target: the chunk protocol reaches >= 0.5 of
// raw TCP. Variants, interleaved per rep:
//   tcp        raw net.Socket, 1 MiB writes, no crypto (the baseline)
//   exchange   ChunkExchange.get with 16 requests in flight: libp2p + framing + sha256 check, no store
//   swarm      Mesh reader (sessions, scheduling, verification), chunks not stored
//   swarm+fs   Mesh reader into an FsChunkStore: verify, putChunk (verify again, write, fdatasync, rename)
// and options (see parseVariant), e.g. exchange:stock (stock Noise crypto), exchange:s1 (1 stream),
// exchange:libp2p (chunks on libp2p streams: no bulk channel, as before issue 8's TLS channel),
// exchange:lent (received into a store's lent buffers, as in an agent: verified on a hash worker).
// Each side reports its own CPU seconds (process.cpuUsage) for the transfer window.
//
//   node scripts/bench/p2p-transfer.ts
//   BENCH_SIZE_MIB=1024 BENCH_REPS=3 BENCH_VARIANTS=tcp,exchange,swarm,swarm+fs node scripts/bench/p2p-transfer.ts
//   BENCH_PROF=/tmp/prof ...   # --cpu-prof for both sides of the p2p variants, written there
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ChunkBlocks, Manifest } from '@peerglance/interface'
import { FsChunkStore } from '@peerglance/chunk-store'
import { createMesh } from '@peerglance/mesh'
import { child, children, commands, cpuSec, fmt, GiB, machineBusy, median, MiB, peakRssMiB, reply, seedChunks } from './p2p-lib.ts'
import type { Child } from './p2p-lib.ts'

const SELF = fileURLToPath(import.meta.url)
const TARGET = 0.5

/**
 * A variant is a base (`tcp`, `exchange`, `swarm`, `swarm+fs`) and options after colons:
 * `stock` (stock Noise crypto instead of ours), `s<N>` (chunk streams per peer), `d<N>`
 * (requests pipelined per stream), `semi<MB>` (node --max-semi-space-size for both sides), `lent`
 * (exchange: chunks received into an FsChunkStore's lent buffers and released at once), `hashalways`,
 * `hashnever` (where those are hashed: ChunkExchangeInit.hashOffThread, default when the main thread is busy).
 */
type Variant = string
const VARIANTS: Variant[] = ['tcp', 'exchange:stock', 'exchange', 'swarm', 'swarm+fs']

interface VariantSpec {
  base: 'tcp' | 'exchange' | 'swarm' | 'swarm+fs'
  noise: 'fast' | 'stock'
  streams?: number
  depth?: number
  nodeFlags: string[]
  /** Set --external-memory-accounted-in-global-limit from inside the process (v8.setFlagsFromString). */
  runtimeFlags?: boolean
  /** -1: no bulk channel, chunks on libp2p streams (`libp2p`); 0 (default): the TLS bulk channel. */
  bulkPort: number
  /** `lent`: chunks are received into an FsChunkStore's lent buffers, as an agent's are, not fresh ones. */
  lent?: boolean
  /** `hashalways` / `hashnever`: where chunks in lent buffers are hashed (ChunkExchangeInit.hashOffThread; default when busy). */
  hashOffThread?: 'always' | 'never'
}

function parseVariant (variant: Variant): VariantSpec {
  const [base, ...opts] = variant.split(':')
  if (!['tcp', 'exchange', 'swarm', 'swarm+fs'].includes(base)) throw new Error(`unknown variant ${variant}`)
  const spec: VariantSpec = { base: base as VariantSpec['base'], noise: 'fast', nodeFlags: [], bulkPort: 0 }
  for (const opt of opts) {
    if (opt === 'stock') spec.noise = 'stock'
    else if (opt === 'libp2p') spec.bulkPort = -1
    else if (opt === 'lent') spec.lent = true
    else if (opt === 'hashalways' || opt === 'hashnever') spec.hashOffThread = opt === 'hashalways' ? 'always' : 'never'
    else if (/^s\d+$/.test(opt)) spec.streams = Number(opt.slice(1))
    else if (/^d\d+$/.test(opt)) spec.depth = Number(opt.slice(1))
    else if (/^semi\d+$/.test(opt)) spec.nodeFlags.push(`--max-semi-space-size=${opt.slice(4)}`)
    else if (opt === 'tracegc') spec.nodeFlags.push('--trace-gc')
    else if (opt === 'extglobal') spec.nodeFlags.push('--external-memory-accounted-in-global-limit')
    else if (opt === 'extglobalrt') spec.runtimeFlags = true
    // The same flag set from JavaScript before anything else loads, as bin/peerglance.js could.
    else if (opt === 'extglobalpre') spec.nodeFlags.push(`--import=data:text/javascript,${encodeURIComponent("import v8 from 'node:v8'; v8.setFlagsFromString('--external-memory-accounted-in-global-limit')")}`)
    else throw new Error(`unknown option ${opt} in ${variant}`)
  }
  return spec
}

function fileSafe (variant: Variant): string {
  return variant.replace(/[^a-z0-9]+/gi, '-')
}

// -----------------------------------------------------------------------------------------------
// Child side: JSON lines on stdin (commands) and stdout (replies).

/** Seed: an FsChunkStore holding `mib` random 1 MiB chunks (made once per data dir), served over the mesh. */
async function seedRole (dir: string, mib: number, variant: Variant): Promise<void> {
  const spec = parseVariant(variant)
  const store = new FsChunkStore({ dir: join(dir, 'chunks') })
  await store.start()
  const manifestFile = join(dir, 'manifest.json')
  await seedChunks(store, manifestFile, mib)
  const mesh = await createMesh({ chunks: store, getManifestBytes: async () => undefined }, { dataDir: dir, noiseCrypto: spec.noise, bulkPort: spec.bulkPort })
  await mesh.start()
  reply({ ready: true, addr: mesh.multiaddrs[0], manifestFile })
  await commands(async () => {})
  await mesh.stop()
  await store.stop()
}

/**
 * Chunks are kept in memory for a moment, not written: the network path without the disk. The
 * last 64 stay readable, enough for a reader that trails the fetches by the read-ahead window.
 */
function discardingBlocks (lender?: FsChunkStore): ChunkBlocks {
  const recent = new Map<string, Uint8Array>()
  return {
    ...(lender != null ? { lendBuffer: (length: number) => lender.lendBuffer(length) } : {}),
    has: async cid => recent.has(cid),
    readChunk: async cid => {
      const bytes = recent.get(cid)
      if (bytes == null) throw Object.assign(new Error(`no ${cid}`), { name: 'ChunkUnavailableError' })
      return bytes
    },
    putChunk: async (cid, bytes) => {
      recent.set(cid, bytes)
      if (recent.size > 64) recent.delete(recent.keys().next().value as string)
    }
  }
}

async function fetchRole (dir: string, variant: Variant, seedAddr: string, manifestFile: string): Promise<void> {
  const spec = parseVariant(variant)
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as Manifest
  const store = spec.base === 'swarm+fs' ? new FsChunkStore({ dir: join(dir, 'chunks') }) : undefined
  await store?.start()
  const lender = spec.lent === true && store == null ? new FsChunkStore({ dir: join(dir, 'lender') }) : undefined
  await lender?.start()
  const mesh = await createMesh({ chunks: store ?? discardingBlocks(lender), getManifestBytes: async () => undefined }, {
    dataDir: dir,
    bootstrap: [seedAddr],
    noiseCrypto: spec.noise,
    bulkPort: spec.bulkPort,
    streamsPerPeer: spec.streams,
    pipelineDepth: spec.depth,
    hashOffThread: spec.hashOffThread
  })
  await mesh.start()
  const seedId = seedAddr.slice(seedAddr.lastIndexOf('/') + 1)
  while (!mesh.connectedPeers().includes(seedId)) await new Promise(resolve => setTimeout(resolve, 20))
  reply({ ready: true })
  await commands(async cmd => {
    if (cmd.op !== 'go') return
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    let bytes = 0
    if (spec.base === 'exchange') {
      const peer = peerIdFromString(seedId)
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < manifest.cids.length) {
          const cid = manifest.cids[next++]
          if (lender != null) {
            const lease = await mesh.exchange.getLease(peer, cid)
            bytes += lease.bytes.byteLength
            lease.release()
          } else {
            // Awaited first: `bytes += await …` reads `bytes` before the await, and 16 workers lose each other's counts.
            const chunk = await mesh.exchange.get(peer, cid)
            bytes += chunk.byteLength
          }
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
    } else {
      for await (const part of mesh.reader.read('bench', manifest, 0, manifest.size - 1)) bytes += part.byteLength
      // With a store, the transfer is done when the last chunk is durable, not when it was read.
      while (mesh.swarm.sessions().some(s => !s.complete)) await new Promise(resolve => setTimeout(resolve, 5))
    }
    const ms = performance.now() - t0
    reply({ done: true, bytes, ms, cpu: cpuSec(c0), totals: mesh.metrics.totals, store: store?.stats })
  })
  await mesh.stop()
  await store?.stop()
  await lender?.stop()
}

async function tcpServerRole (total: number): Promise<void> {
  const buf = Buffer.alloc(MiB, 7)
  const server = createServer(socket => {
    let sent = 0
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(MiB, total - sent)
        sent += n
        if (!socket.write(n === MiB ? buf : buf.subarray(0, n))) {
          socket.once('drain', pump)
          return
        }
      }
      socket.end()
    }
    pump()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  reply({ ready: true, port: (server.address() as { port: number }).port })
  await commands(async () => {})
  server.close()
}

async function tcpClientRole (port: number, total: number): Promise<void> {
  reply({ ready: true })
  await commands(async cmd => {
    if (cmd.op !== 'go') return
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    let bytes = 0
    await new Promise<void>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1')
      socket.on('data', d => { bytes += d.length })
      socket.on('end', resolve)
      socket.on('error', reject)
    })
    if (bytes !== total) throw new Error(`got ${bytes} of ${total}`)
    reply({ done: true, bytes, ms: performance.now() - t0, cpu: cpuSec(c0) })
  })
}

// -----------------------------------------------------------------------------------------------
// Orchestrator

interface Run {
  variant: Variant
  rep: number
  mibps: number
  sendCpu: number
  recvCpu: number
  /** Receiver CPU-s/GiB per kind of thread: MainThread, libuv-worker (fs, fdatasync), V8Worker (GC), other. */
  recvThreads: Record<string, number>
  othersPct: number
  load1: number
  peakRssMiB: { send: number, recv: number }
}

type ThreadSnapshot = Map<string, { name: string, sec: number }>
let threads: { threadCpu: (pid: number) => ThreadSnapshot, threadCpuDelta: (a: ThreadSnapshot, b: ThreadSnapshot) => Record<string, number> } | undefined

async function runOne (variant: Variant, rep: number, mib: number, work: string, prof: string | undefined): Promise<Run> {
  const total = mib * MiB
  const spec = parseVariant(variant)
  const flags = (side: string): string[] => [
    ...spec.nodeFlags,
    ...(prof != null && spec.base !== 'tcp' ? ['--cpu-prof', `--cpu-prof-dir=${prof}`, `--cpu-prof-name=${fileSafe(variant)}-r${rep}-${side}.cpuprofile`] : [])
  ]
  let sender: Child
  let receiver: Child
  if (spec.base === 'tcp') {
    sender = child(SELF, ['tcp-server', String(total)])
    const { port } = await sender.next(m => m.ready === true)
    receiver = child(SELF, ['tcp-client', String(port), String(total)])
  } else {
    sender = child(SELF, ['seed', join(work, 'seed'), String(mib), variant], flags('send'))
    const { addr, manifestFile } = await sender.next(m => m.ready === true)
    const fetchDir = join(work, `fetch-${fileSafe(variant)}-${rep}`)
    receiver = child(SELF, ['fetch', fetchDir, variant, addr, manifestFile], flags('recv'))
  }
  try {
    await receiver.next(m => m.ready === true)
    sender.send({ op: 'cpu' })
    const s0 = (await sender.next(m => m.cpu != null)).cpu as number
    const b0 = machineBusy()
    const t0 = threads!.threadCpu(receiver.proc.pid!)
    receiver.send({ op: 'go' })
    const done = await receiver.next(m => m.done === true)
    const t1 = threads!.threadCpu(receiver.proc.pid!)
    const rss = { send: peakRssMiB(sender.proc.pid!), recv: peakRssMiB(receiver.proc.pid!) }
    const b1 = machineBusy()
    sender.send({ op: 'cpu' })
    const s1 = (await sender.next(m => m.cpu != null)).cpu as number
    if (done.bytes !== total) throw new Error(`${variant}: received ${done.bytes} of ${total} bytes`)
    if (process.env.BENCH_DEBUG != null) process.stderr.write(`[p2p] ${variant} receiver totals ${JSON.stringify(done.totals)}, store ${JSON.stringify(done.store)}\n`)
    const sec = done.ms / 1000
    const sendCpu = s1 - s0
    const recvCpu = done.cpu as number
    return {
      variant,
      rep,
      mibps: mib / sec,
      sendCpu: sendCpu / (total / GiB),
      recvCpu: recvCpu / (total / GiB),
      recvThreads: Object.fromEntries(Object.entries(threads!.threadCpuDelta(t0, t1)).map(([k, v]) => [k, v / (total / GiB)])),
      othersPct: Math.max(0, 100 * ((b1 - b0) - sendCpu - recvCpu) / sec),
      peakRssMiB: rss,
      load1: (await import('node:os')).loadavg()[0]
    }
  } finally {
    await receiver.exit()
    await sender.exit()
    if (spec.base !== 'tcp') await rm(join(work, `fetch-${fileSafe(variant)}-${rep}`), { recursive: true, force: true })
  }
}

function threadText (perThread: Record<string, number>): string {
  return Object.entries(perThread).filter(([, v]) => v >= 0.01).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')
}

async function main (): Promise<void> {
  const os = await import('node:os')
  // Loaded here, not at the top: the child roles do not need the agent-spawning helpers.
  threads = await import('./lib.ts')
  const mib = Number(process.env.BENCH_SIZE_MIB ?? 1024)
  const reps = Number(process.env.BENCH_REPS ?? 3)
  const variants = (process.env.BENCH_VARIANTS ?? VARIANTS.join(',')).split(',').map(v => v.trim()) as Variant[]
  const prof = process.env.BENCH_PROF
  const keep = process.env.BENCH_KEEP_DIR
  const work = keep ?? await mkdtemp(join(os.tmpdir(), 'peerglance-bench-p2p-'))
  const cleanup = async (): Promise<void> => {
    for (const proc of children) proc.kill('SIGKILL')
    if (keep == null) await rm(work, { recursive: true, force: true })
  }
  process.once('SIGINT', () => { void cleanup().finally(() => process.exit(130)) })
  console.log(`## P2P transfer: ${mib} MiB between two Node processes on loopback\n`)
  console.log(`- command: \`BENCH_SIZE_MIB=${mib} BENCH_REPS=${reps} BENCH_VARIANTS=${variants.join(',')} node scripts/bench/p2p-transfer.ts\``)
  console.log(`- date: ${new Date().toISOString()}; ${os.cpus().length} vCPU; Node ${process.version}; load average at start ${os.loadavg().map(x => x.toFixed(2)).join(' ')}\n`)
  const runs: Run[] = []
  try {
    // The seed's chunks are made once (first seed start), outside any measurement.
    if (variants.some(v => parseVariant(v).base !== 'tcp')) {
      const seed = child(SELF, ['seed', join(work, 'seed'), String(mib), 'exchange'])
      await seed.next(m => m.ready === true)
      await seed.exit()
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const variant of variants) {
        const run = await runOne(variant, rep, mib, work, prof)
        runs.push(run)
        process.stderr.write(`[p2p] rep ${rep} ${variant}: ${fmt(run.mibps)} MiB/s, send ${fmt(run.sendCpu, 2)} / recv ${fmt(run.recvCpu, 2)} CPU-s/GiB (${threadText(run.recvThreads)}), peak RSS send ${fmt(run.peakRssMiB.send)} / recv ${fmt(run.peakRssMiB.recv)} MiB, others ${fmt(run.othersPct)} %, load ${fmt(run.load1, 2)}\n`)
      }
    }
  } finally {
    await cleanup()
  }
  const tcp = median(runs.filter(r => r.variant === 'tcp').map(r => r.mibps))
  console.log('| variant | MiB/s (median) | all runs | ratio vs raw TCP | CPU-s/GiB send | CPU-s/GiB recv | recv by thread (CPU-s/GiB) | est. MiB/s, 1 free core per side | est. MiB/s, 2 cores shared | peak RSS send / recv MiB | other procs CPU % |')
  console.log('|---|---|---|---|---|---|---|---|---|---|---|')
  for (const variant of variants) {
    const rs = runs.filter(r => r.variant === variant)
    const mibps = median(rs.map(r => r.mibps))
    const send = median(rs.map(r => r.sendCpu))
    const recv = median(rs.map(r => r.recvCpu))
    // Each rep's ratio against the raw TCP run of the same rep, then the median of those.
    const ratios = rs.map(r => r.mibps / (runs.find(t => t.variant === 'tcp' && t.rep === r.rep)?.mibps ?? tcp))
    const byThread: Record<string, number> = {}
    for (const key of Object.keys(rs[0]?.recvThreads ?? {})) byThread[key] = median(rs.map(r => r.recvThreads[key] ?? 0))
    console.log(`| ${variant} | ${fmt(mibps)} | ${rs.map(r => fmt(r.mibps)).join(', ')} | ${fmt(median(ratios), 3)} | ${fmt(send, 2)} | ${fmt(recv, 2)} | ${threadText(byThread)} | ${fmt(1024 / Math.max(send, recv))} | ${fmt(2048 / (send + recv))} | ${fmt(median(rs.map(r => r.peakRssMiB.send)))} / ${fmt(median(rs.map(r => r.peakRssMiB.recv)))} | ${fmt(median(rs.map(r => r.othersPct)))} |`)
  }
  const best = Math.max(...variants.filter(v => parseVariant(v).base !== 'tcp').map(v => median(runs.filter(r => r.variant === v).map(r => r.mibps)) / tcp))
  console.log(`\nbest p2p variant / raw TCP = ${fmt(best, 3)} (target >= ${TARGET})`)
}

const [role, ...args] = process.argv.slice(2)
if (role === 'seed' || role === 'fetch') {
  const variant = role === 'seed' ? args[2] : args[1]
  if (parseVariant(variant).runtimeFlags === true) (await import('node:v8')).setFlagsFromString('--external-memory-accounted-in-global-limit')
}
switch (role) {
  case 'seed': await seedRole(args[0], Number(args[1]), args[2]); break
  case 'fetch': await fetchRole(args[0], args[1], args[2], args[3]); break
  case 'tcp-server': await tcpServerRole(Number(args[0])); break
  case 'tcp-client': await tcpClientRole(Number(args[0]), Number(args[1])); break
  default: await main()
}
// A child exits once its role is done (libp2p may leave handles open); --cpu-prof writes on exit.
if (role != null) process.exit(0)
