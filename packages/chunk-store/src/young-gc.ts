import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type Gc = (options: { type: 'minor' | 'major', execution: 'sync' }) => void

let gc: Gc | undefined
/** Bytes received since the last scavenge `received` ran, over the whole process. */
let sinceScavenge = 0
/** Bytes of memory let go (`letGo`) since our last full collection. */
let letGoSinceMajor = 0

/**
 * Bytes received between two scavenges. Every 32 MiB, some uploads still ran into runs of 8-34
 * mark-compacts ("GC in old space requested": the dead socket buffers' external bytes reaching
 * the limit), 0.5-1.5 CPU-s per GiB on V8's helper threads; every 8 MiB, at most 6 in 8 uploads
 * (docs/benchmarks.md, upload step 4), for ~0.1 ms per scavenge. Chunks from peers likewise: a
 * 1 GiB fetch peaked at 245 MiB RSS without, 162 every 8 MiB (swarm step 6), when each socket
 * read was a fresh buffer; chunks received into the store's slots no longer count (a scavenge in
 * a busy downloader copies its live young objects: ours tripled V8's own for nothing).
 */
export const COLLECT_EVERY = 8 * 1024 * 1024

/**
 * A garbage collection now: 'minor' scavenges the young generation, 'major' collects the whole
 * heap (the agent's idle collector). The gc extension is installed in contexts made after the
 * flag is set, so one is made once; the flag stays on.
 */
export function collectGarbage (type: 'minor' | 'major'): void {
  if (gc == null) {
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as Gc
  }
  gc({ type, execution: 'sync' })
  if (type === 'major') letGoSinceMajor = 0
}

/**
 * Tells the agent's idle collector (agent/src/idle-collector.ts) that `bytes` of memory held only
 * by old objects were let go (the store's slots once idle): only a full collection frees them,
 * and at rest none comes unless asked for.
 */
export function letGo (bytes: number): void {
  letGoSinceMajor += bytes
}

/** Bytes let go since the last full collection run through `collectGarbage`. */
export function letGoSince (): number {
  return letGoSinceMajor
}

/**
 * Counts bytes received into chunks (an upload's socket reads, chunks from peers) and scavenges
 * every COLLECT_EVERY of them, over all transfers of the process. They allocate almost nothing on
 * V8's heap but a buffer per socket read, dead once copied into its chunk; the young generation
 * fills so slowly that those buffers wait, holding memory, until their external bytes start a
 * full mark-compact: 28 per GiB uploaded in --trace-gc, against 1 with regular scavenges, and an
 * upload's peak RSS 35 MB lower (docs/benchmarks.md, step 3). A scavenge with nothing alive to
 * copy takes ~0.1 ms.
 */
export function received (bytes: number): void {
  sinceScavenge += bytes
  if (sinceScavenge < COLLECT_EVERY) return
  sinceScavenge = 0
  collectGarbage('minor')
}
