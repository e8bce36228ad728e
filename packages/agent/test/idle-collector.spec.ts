import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { letGo } from '@peerglance/chunk-store'
import { collectWhenIdle } from '../src/idle-collector.ts'
import type { Collected } from '../src/idle-collector.ts'

describe('collectWhenIdle', () => {
  let cpu: number
  let collected: Collected[]
  let stop: () => void

  beforeEach(() => {
    vi.useFakeTimers()
    cpu = 0
    collected = []
    // The first collection of a process always runs once idle: the heap has grown from nothing.
    stop = collectWhenIdle(c => collected.push(c), { cpuMs: () => cpu })
  })

  afterEach(() => {
    stop()
    vi.useRealTimers()
  })

  /** `seconds` of the agent's life, using `busyMs` of CPU in each. */
  function live (seconds: number, busyMs = 0): void {
    for (let i = 0; i < seconds; i++) {
      cpu += busyMs
      vi.advanceTimersByTime(1000)
    }
  }

  it('collects the heap once the agent has been idle for 10 s', () => {
    live(9)
    expect(collected).toEqual([])
    live(1)
    expect(collected).toHaveLength(1)
    expect(collected[0].heapBefore).toBeGreaterThan(0)
  })

  it('does not collect when work started in the last second, though the last 10 s were nearly idle', () => {
    live(9)
    // A download's first 400 ms: 4 % of the 10 s, but the young generation is already full of it.
    live(1, 400)
    expect(collected).toEqual([])
    live(5, 900)
    expect(collected).toEqual([])
    // Idle again for 10 s: now it collects.
    live(9)
    expect(collected).toEqual([])
    live(1)
    expect(collected).toHaveLength(1)
  })

  it('collects again at rest once memory was let go, though the heap did not grow', () => {
    stop()
    // A heap that neither grows nor keeps a large young generation (the test process's own would).
    stop = collectWhenIdle(c => collected.push(c), { cpuMs: () => cpu, heap: () => ({ total: 50 * 1024 * 1024, young: 1024 * 1024 }) })
    live(10)
    expect(collected).toHaveLength(1)
    live(20)
    expect(collected).toHaveLength(1)
    // The store's slots, idle after a transfer: only a full collection frees their memory.
    letGo(24 * 1024 * 1024)
    live(10)
    expect(collected).toHaveLength(2)
    live(20)
    expect(collected).toHaveLength(2)
  })

  it('counts a little background work as idle', () => {
    live(10, 30)
    expect(collected).toHaveLength(1)
  })
})
