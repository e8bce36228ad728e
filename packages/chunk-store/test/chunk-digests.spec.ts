import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { ChunkDigests } from '../src/chunk-digests.ts'

function shared (length: number): Uint8Array {
  const bytes = new Uint8Array(new SharedArrayBuffer(length))
  bytes.set(randomBytes(length))
  return bytes
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
const expected = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

describe('ChunkDigests', () => {
  let digests: ChunkDigests
  afterEach(async () => { await digests.close() })

  it('keeps its worker while digests keep coming and ends it once idle for idleMs', async () => {
    digests = new ChunkDigests({ idleMs: 300 })
    const a = shared(64 * 1024)
    expect(hex(await digests.sha256(a))).toBe(expected(a))
    expect(digests.started).toBe(1)
    // Digests closer together than idleMs reuse the worker.
    for (let i = 0; i < 4; i++) {
      await sleep(100)
      expect(hex(await digests.sha256(a))).toBe(expected(a))
    }
    expect(digests.started).toBe(1)
    expect(digests.onWorker).toBe(5)
    // Idle longer than idleMs: the worker ended, and the next digest starts another that answers rightly.
    await sleep(600)
    const b = shared(64 * 1024)
    expect(hex(await digests.sha256(b))).toBe(expected(b))
    expect(digests.started).toBe(2)
    expect(digests.onWorker).toBe(6)
  })

  it('does not end the worker while a digest is in flight, however long it takes', async () => {
    digests = new ChunkDigests({ idleMs: 1 })
    const many = Array.from({ length: 32 }, () => shared(1024 * 1024))
    const results = await Promise.all(many.map(async bytes => hex(await digests.sha256(bytes))))
    expect(results).toEqual(many.map(expected))
    expect(digests.started).toBe(1)
    expect(digests.onWorker).toBe(32)
  })

  it('hashes bytes outside shared memory on the calling thread', async () => {
    digests = new ChunkDigests()
    const bytes = randomBytes(4096)
    expect(hex(await digests.sha256(bytes))).toBe(expected(bytes))
    expect(digests.started).toBe(0)
  })
})
