import { getHeapSpaceStatistics } from 'node:v8'
import { collectGarbage } from '@peerglance/chunk-store'

/** How often the agent looks at its heap. */
const CHECK_MS = 10_000
/** Idle: less CPU than this share of one core since the last look (moving data takes far more). */
const IDLE_SHARE = 0.05
/** Worth a full collection: a young generation grown past this, or the heap grown this much since the last one. */
const YOUNG_BYTES = 2 * 1024 * 1024
const GROWTH_BYTES = 8 * 1024 * 1024

export interface Collected { heapBefore: number, heapAfter: number, youngBefore: number }

/**
 * One full collection when the agent has been idle for a while and its heap holds what busier
 * times left: V8 grows the young generation to its cap (2 × 8 MiB here) during start-up and any
 * transfer, and shrinks it only in a collection that is meant to reduce memory, which an idle
 * process never triggers; start-up also leaves ~12 MB of garbage in the old generation. One
 * collection (~30 ms) gives back ~25 MB of RSS (docs/benchmarks.md, "The agent at rest"). It runs
 * at most once per CHECK_MS, and again only once the heap has grown back.
 */
export function collectWhenIdle (onCollected: (c: Collected) => void): () => void {
  let last = process.cpuUsage()
  /** The heap after the last collection (none yet: start-up left its garbage). */
  let floor = 0
  const timer = setInterval(() => {
    const used = process.cpuUsage(last)
    last = process.cpuUsage()
    if ((used.user + used.system) / 1000 > IDLE_SHARE * CHECK_MS) return
    const heap = process.memoryUsage()
    const young = getHeapSpaceStatistics().find(s => s.space_name === 'new_space')?.space_size ?? 0
    if (young <= YOUNG_BYTES && heap.heapTotal <= floor + GROWTH_BYTES) return
    collectGarbage('major')
    floor = process.memoryUsage().heapTotal
    onCollected({ heapBefore: heap.heapTotal, heapAfter: floor, youngBefore: young })
  }, CHECK_MS)
  timer.unref()
  return () => { clearInterval(timer) }
}
