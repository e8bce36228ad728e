import { describe, expect, it } from 'vitest'
import { OffloadGate } from '../src/offload-gate.ts'

const MiB = 1024 * 1024

/** A manual clock: `run(ms, busyShare)` advances the time with the thread on a CPU that share of it. */
function manualClock (): { clock: { now: () => number, cpu: () => number }, run: (ms: number, busy: number) => void } {
  let now = 0
  let cpu = 0
  return {
    clock: { now: () => now, cpu: () => cpu },
    run: (ms, busy) => {
      now += ms
      cpu += ms * busy
    }
  }
}

describe('OffloadGate: chunks hashed on the worker only while the main thread is near saturated', () => {
  it('keeps hashing here while the thread has time to spare, however many chunks come', () => {
    const { clock, run } = manualClock()
    // 0.5 ms per MiB, as sha256 on this machine.
    const gate = new OffloadGate({ clock, msPerByte: 0.5 / MiB })
    for (let i = 0; i < 100; i++) {
      run(10, 0.5)
      expect(gate.offload(MiB)).toBe(false)
    }
  })

  it('hands hashing over once the thread ran most of a window, keeps it there while the hashing handed over would saturate it again, and takes it back after', () => {
    const { clock, run } = manualClock()
    const gate = new OffloadGate({ clock, msPerByte: 0.5 / MiB, threshold: 0.8, windowMs: 250 })
    // Busy: the first window ends and hashing goes to the worker.
    run(250, 0.95)
    expect(gate.offload(MiB)).toBe(true)
    // Offloaded, the thread runs 60 % of the time, and hands over 200 MiB of hashing in the
    // window (100 ms here): 60 + 40 % busy with it done here, so it stays with the worker.
    for (let i = 0; i < 200; i++) {
      run(250 / 200, 0.6)
      expect(gate.offload(MiB)).toBe(true)
    }
    // A window of the same load with one chunk handed over: 60 % and a little, below 80 %.
    run(250, 0.6)
    expect(gate.offload(MiB)).toBe(false)
    run(10, 0.6)
    expect(gate.offload(MiB)).toBe(false)
  })

  it('measures this machine\'s hashing cost itself when not told', () => {
    const { clock, run } = manualClock()
    const gate = new OffloadGate({ clock, windowMs: 100 })
    run(100, 1)
    expect(gate.offload(1024 * MiB)).toBe(true)
    // The next window was idle but for the 1 GiB handed over, which takes far longer than a window to hash.
    run(100, 0)
    expect(gate.offload(MiB)).toBe(true)
    run(100, 0)
    expect(gate.offload(MiB)).toBe(false)
  })
})
