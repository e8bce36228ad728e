import { describe, expect, it } from 'vitest'
import { DirSyncer } from '../src/dir-syncer.ts'

/** A sync function whose calls finish only when the test says so. */
function heldSyncs (): { sync: (dir: string) => Promise<void>, started: string[], finish: (err?: Error) => void } {
  const started: string[] = []
  const waiting: Array<PromiseWithResolvers<void>> = []
  return {
    started,
    sync: async (dir: string) => {
      started.push(dir)
      const held = Promise.withResolvers<void>()
      waiting.push(held)
      await held.promise
    },
    finish: (err?: Error) => {
      const held = waiting.shift()
      if (err == null) held?.resolve()
      else held?.reject(err)
    }
  }
}

const tick = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

describe('DirSyncer', () => {
  it('syncs in the background one directory at a time, each once however often it was added', async () => {
    const { sync, started, finish } = heldSyncs()
    const syncer = new DirSyncer(sync)
    syncer.add('a')
    syncer.add('b')
    syncer.add('b')
    expect(started).toEqual(['a'])
    finish()
    await tick()
    expect(started).toEqual(['a', 'b'])
    finish()
    await syncer.flush(4)
    expect(started).toEqual(['a', 'b'])
  })

  it('syncs a directory again when it was added while its sync ran: that sync may not cover the new name', async () => {
    const { sync, started, finish } = heldSyncs()
    const syncer = new DirSyncer(sync)
    syncer.add('a')
    syncer.add('a')
    let flushed = false
    const flush = syncer.flush(4).then(() => { flushed = true })
    finish()
    await tick()
    expect(started).toEqual(['a', 'a'])
    expect(flushed).toBe(false)
    finish()
    await flush
  })

  it('flushes what is left with the given concurrency', async () => {
    const { sync, started, finish } = heldSyncs()
    const syncer = new DirSyncer(sync)
    for (const dir of ['a', 'b', 'c', 'd']) syncer.add(dir)
    const flush = syncer.flush(3)
    expect(started).toEqual(['a', 'b', 'c'])
    for (let i = 0; i < 4; i++) {
      finish()
      await tick()
    }
    await flush
    expect(started).toEqual(['a', 'b', 'c', 'd'])
  })

  it('fails the flush with the first failure and settles', async () => {
    const { sync, finish } = heldSyncs()
    const syncer = new DirSyncer(sync)
    syncer.add('a')
    syncer.add('b')
    const flush = syncer.flush(1)
    finish(new Error('EIO'))
    await expect(flush).rejects.toThrow('EIO')
    await syncer.settle()
  })
})
