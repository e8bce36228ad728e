// Helpers shared by the peer-to-peer benchmarks (p2p-transfer.ts, seeding.ts): child processes
// that talk JSON lines over stdin/stdout, CPU and memory readings, and the seed's chunk set.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import type { Manifest } from '@peerglance/interface'
import { cidOf } from '@peerglance/interface'
import type { FsChunkStore } from '@peerglance/chunk-store'

export const MiB = 1024 * 1024
export const GiB = 1024 * MiB

// -----------------------------------------------------------------------------------------------
// Child side

export function reply (obj: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

export function cpuSec (since?: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since)
  return (u.user + u.system) / 1e6
}

export async function commands (handler: (cmd: Record<string, any>) => Promise<void>): Promise<void> {
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line.trim() === '') continue
    const cmd = JSON.parse(line) as Record<string, any>
    if (cmd.op === 'exit') break
    if (cmd.op === 'cpu') {
      reply({ cpu: cpuSec() })
      continue
    }
    await handler(cmd)
  }
}

/**
 * The seed's image: `mib` random 1 MiB chunks put into the store, made once per directory and
 * described by `manifestFile` (kept beside the chunks, so later runs reuse both).
 */
export async function seedChunks (store: FsChunkStore, manifestFile: string, mib: number): Promise<Manifest> {
  try {
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as Manifest
    if (manifest.cids.length === mib) return manifest
  } catch {}
  const cids: string[] = []
  const chunk = Buffer.allocUnsafe(MiB)
  for (let i = 0; i < mib; i++) {
    randomFillSync(chunk)
    const cid = cidOf(chunk)
    await store.putChunk(cid, chunk)
    cids.push(cid)
  }
  const manifest: Manifest = { size: mib * MiB, chunkSize: MiB, cids, md5: '', sha512: '', staged: false }
  await writeFile(manifestFile, JSON.stringify(manifest))
  return manifest
}

// -----------------------------------------------------------------------------------------------
// Orchestrator side

export interface Child {
  proc: ChildProcess
  next: (pred: (m: Record<string, any>) => boolean, timeoutMs?: number) => Promise<Record<string, any>>
  send: (cmd: Record<string, unknown>) => void
  exit: () => Promise<void>
}

export const children = new Set<ChildProcess>()

export function child (script: string, args: string[], nodeFlags: string[] = []): Child {
  const proc = spawn(process.execPath, [...nodeFlags, script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
  children.add(proc)
  proc.on('exit', () => children.delete(proc))
  const queue: Array<Record<string, any>> = []
  const waiters: Array<{ pred: (m: Record<string, any>) => boolean, resolve: (m: Record<string, any>) => void }> = []
  const lines = createInterface({ input: proc.stdout! })
  lines.on('line', line => {
    let msg: Record<string, any>
    try {
      msg = JSON.parse(line)
    } catch {
      process.stderr.write(`[child] ${line}\n`)
      return
    }
    const at = waiters.findIndex(w => w.pred(msg))
    if (at >= 0) waiters.splice(at, 1)[0].resolve(msg)
    else queue.push(msg)
  })
  const exited = new Promise<void>(resolve => proc.on('exit', () => resolve()))
  return {
    proc,
    next: async (pred, timeoutMs = 600_000) => {
      const at = queue.findIndex(pred)
      if (at >= 0) return queue.splice(at, 1)[0]
      return await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('child did not answer in time')), timeoutMs)
        waiters.push({ pred, resolve: m => { clearTimeout(timer); resolve(m) } })
        void exited.then(() => reject(new Error(`child ${args[0]} exited`)))
      })
    },
    send: cmd => { proc.stdin!.write(JSON.stringify(cmd) + '\n') },
    exit: async () => {
      if (proc.exitCode != null) return
      proc.stdin!.write(JSON.stringify({ op: 'exit' }) + '\n')
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000)
      await exited
      clearTimeout(timer)
    }
  }
}

/** Busy CPU seconds of the whole machine (/proc/stat, 100 ticks per second). */
export function machineBusy (): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  return (f[0] + f[1] + f[2] + f[5] + f[6]) / 100
}

/** Peak resident set (VmHWM) of a process, in MiB. */
export function peakRssMiB (pid: number): number {
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024
}

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

export const fmt = (x: number, d = 0): string => Number.isFinite(x) ? x.toFixed(d) : 'n/a'

