import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type Gc = (options: { type: 'minor', execution: 'sync' }) => void

let gc: Gc | undefined

/**
 * Bytes an upload receives between two scavenges. Every 32 MiB, some uploads still ran into runs
 * of 8-34 mark-compacts ("GC in old space requested": the dead socket buffers' external bytes
 * reaching the limit), 0.5-1.5 CPU-s per GiB on V8's helper threads; every 8 MiB, at most 6 in 8
 * uploads (docs/benchmarks.md, upload step 4), for ~0.1 ms per scavenge.
 */
export const COLLECT_EVERY = 8 * 1024 * 1024

/**
 * A scavenge, now. An upload allocates almost nothing on V8's heap but a 64 KiB socket buffer per
 * read, dead once copied into its chunk; the young generation fills so slowly that those buffers
 * wait, holding memory, until their external bytes start a full mark-compact: 28 per GiB in
 * --trace-gc, against 1 with a scavenge every 32 MiB (now 8), and an upload's peak RSS 35 MB lower
 * (docs/benchmarks.md, step 3). A scavenge with nothing alive to copy takes ~0.1 ms.
 */
export function collectYoung (): void {
  if (gc == null) {
    // The gc extension is installed in contexts made after the flag is set; the flag stays on.
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as Gc
  }
  gc({ type: 'minor', execution: 'sync' })
}
