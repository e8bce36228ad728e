import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8'
import { collectGarbage, letGoSince } from '@peerglance/chunk-store'

/** How often the agent looks at its CPU use. */
const LOOK_MS = 1_000
/** Looks in a row that must find it idle before it looks at its heap: 10 s idle. */
const IDLE_LOOKS = 10
/** Idle: less CPU than this share of one core since the last look (moving data takes far more). */
const IDLE_SHARE = 0.05
/**
 * Worth a full collection: a young generation grown past this, or the heap grown this much since
 * the last one, or memory let go since (the store's idle slots, young-gc.ts `letGo`).
 */
const YOUNG_BYTES = 2 * 1024 * 1024
const GROWTH_BYTES = 8 * 1024 * 1024

export interface Collected { heapBefore: number, heapAfter: number, youngBefore: number }

function processCpuMs (): number {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1000
}

/** V8's heap now, bytes: all of it, and the young generation. */
function heapNow (): { total: number, young: number } {
  return {
    total: getHeapStatistics().total_heap_size,
    young: getHeapSpaceStatistics().find(s => s.space_name === 'new_space')?.space_size ?? 0
  }
}

/**
 * One full collection when the agent has been idle for a while and its heap holds what busier
 * times left: V8 grows the young generation to its cap (2 × 2 MiB here) during start-up and any
 * transfer, and shrinks it only in a collection that is meant to reduce memory, which an idle
 * process never triggers, and V8 keeps pages it freed. One collection (~30 ms) gives back
 * ~17 MB of RSS at rest after start-up (test/agent/memory.spec.ts), more after a transfer. It runs
 * at most once per IDLE_LOOKS looks, and again only once the heap has grown back or memory was let go.
 *
 * Idle means every one of the last IDLE_LOOKS seconds, not their sum: one look back over 10 s
 * also passed in the first half second of a download, whose first chunks had already grown the
 * young generation, and collected the whole heap then (a 100-270 ms pause in 6 of 8 downloaders
 * of one swarm run, docs/benchmarks.md, "V8's full collections during a download").
 * `cpuMs` (the process's CPU time, ms) and `heap` are for tests.
 */
export function collectWhenIdle (onCollected: (c: Collected) => void, { cpuMs = processCpuMs, heap = heapNow } = {}): () => void {
  let last = cpuMs()
  let idleLooks = 0
  /** The heap after the last collection (none yet: start-up left its garbage). */
  let floor = 0
  const timer = setInterval(() => {
    const now = cpuMs()
    idleLooks = now - last > IDLE_SHARE * LOOK_MS ? 0 : idleLooks + 1
    last = now
    if (idleLooks < IDLE_LOOKS) return
    idleLooks = 0
    const { total: heapBefore, young } = heap()
    if (young <= YOUNG_BYTES && heapBefore <= floor + GROWTH_BYTES && letGoSince() === 0) return
    collectGarbage('major')
    floor = heap().total
    onCollected({ heapBefore, heapAfter: floor, youngBefore: young })
  }, LOOK_MS)
  timer.unref()
  return () => { clearInterval(timer) }
}
