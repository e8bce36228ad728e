import { Transform } from 'node:stream'
import type { CommandIo } from './io.ts'

const MiB = 1024 * 1024

export function formatBytes (n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024; let u = 0
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++ }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`
}

function formatSeconds (s: number): string {
  if (!Number.isFinite(s)) return '--:--'
  const m = Math.floor(s / 60); const sec = Math.floor(s % 60)
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : `${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`
}

/**
 * A pass-through stream that draws `[####----] 1.2 GiB / 4.0 GiB  310 MiB/s  ETA 00:09` on stderr
 * when stderr is a terminal (at most ten times a second), and nothing otherwise, so logs and pipes
 * stay clean.
 */
export function progressBar (io: CommandIo, total: number, label: string): Transform & { done: () => void } {
  const started = Date.now()
  let seen = 0; let drawn = 0
  const tty = io.stderr.isTTY === true
  const draw = (): void => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001)
    const rate = seen / secs
    const share = total > 0 ? Math.min(seen / total, 1) : 1
    const width = 24; const filled = Math.round(share * width)
    io.stderr.write(`\r${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${formatBytes(seen)} / ${formatBytes(total)}  ${(rate / MiB).toFixed(1)} MiB/s  ETA ${formatSeconds((total - seen) / rate)} `)
  }
  const bar = new Transform({
    transform (chunk: Buffer, _enc, callback) {
      seen += chunk.length
      if (tty && Date.now() - drawn > 100) { drawn = Date.now(); draw() }
      callback(null, chunk)
    }
  }) as Transform & { done: () => void }
  bar.done = () => { if (tty) { draw(); io.stderr.write('\n') } }
  return bar
}
