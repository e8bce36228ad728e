import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { ChunkSlots } from '../src/chunk-slots.ts'
import { collectGarbage, letGoSince } from '../src/young-gc.ts'

const SLOT = 64 * 1024
const IDLE_MS = 200

/** Lends `n` slots, remembers their memory weakly (the caller keeps no strong reference), and returns their release. */
function lendSome (slots: ChunkSlots, n: number): { memory: WeakRef<ArrayBufferLike>, release: Array<() => void> } {
  const leases = Array.from({ length: n }, () => slots.lend(SLOT))
  for (const lease of leases) expect(slots.owns(lease.bytes)).toBe(true)
  return { memory: new WeakRef(leases[0].bytes.buffer), release: leases.map(l => l.release) }
}

async function collected (memory: WeakRef<ArrayBufferLike>): Promise<boolean> {
  await sleep(0)
  collectGarbage('major')
  await sleep(0)
  return memory.deref() == null
}

describe('ChunkSlots', () => {
  it('lets its memory go once every slot has been back for a while, and lends from a new one after', async () => {
    const slots = new ChunkSlots(SLOT, 4, IDLE_MS)
    expect(slots.holding).toBe(false)
    const { memory, release } = lendSome(slots, 2)
    expect(slots.holding).toBe(true)
    release[0]()
    // One slot still out: held however long.
    await sleep(IDLE_MS * 2)
    expect(slots.holding).toBe(true)
    expect(await collected(memory)).toBe(false)
    release[1]()
    release.length = 0
    // Handed back and lent again within the idle time: the clock starts over at the last move.
    await sleep(IDLE_MS / 2)
    lendSome(slots, 1).release[0]()
    await sleep(IDLE_MS * 0.75)
    expect(slots.holding).toBe(true)
    await sleep(IDLE_MS)
    expect(slots.holding).toBe(false)
    // The agent's idle collector is told, as only a full collection frees it.
    expect(letGoSince()).toBeGreaterThanOrEqual(4 * SLOT)
    // Nothing else holds it: the next full collection frees the pages.
    expect(await collected(memory)).toBe(true)

    const again = lendSome(slots, 4)
    expect(slots.holding).toBe(true)
    expect(slots.peak).toBe(4)
    for (const release of again.release) release()
  })

  it('keeps its memory while slots move, however long that lasts', async () => {
    const slots = new ChunkSlots(SLOT, 2, IDLE_MS)
    const { memory } = lendSome(slots, 1)
    // The first lease stays out while others come and go.
    for (let i = 0; i < 5; i++) {
      lendSome(slots, 1).release[0]()
      await sleep(IDLE_MS / 2)
    }
    expect(slots.holding).toBe(true)
    expect(await collected(memory)).toBe(false)
  })
})
