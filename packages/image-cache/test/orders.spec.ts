import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LruImageCache } from '../src/image-cache.ts'
import type { Holdings } from '../src/image-cache.ts'
import { silentLogger } from '@peerglance/interface'

// Prefetch orders from other agents (`peerglance prefetch --agents`) may arrive before the image's
// record does: the cache keeps the order for a while and acts when the record says active.

const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

async function cacheFetchingInto (fetched: string[]): Promise<LruImageCache> {
  const dir = await mkdtemp(join(tmpdir(), 'peerglance-orders-'))
  dirs.push(dir)
  const holdings: Holdings = {
    held: async () => [],
    replicas: async () => 0,
    fetch: async imageId => { fetched.push(imageId) },
    drop: async () => {},
    usage: async () => ({ used: 0, free: 1e12, total: 1e12 })
  }
  const cache = new LruImageCache({ holdings, logger: silentLogger }, { statePath: join(dir, 'cache.json'), maxBytes: 1e9, reserveBytes: 0 })
  await cache.start()
  return cache
}

const settled = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 20)) }

describe('prefetch orders', () => {
  it('fetches an active image at once', async () => {
    const fetched: string[] = []
    const cache = await cacheFetchingInto(fetched)
    cache.order({ id: 'a', status: 'active' }, 'a')
    await settled()
    expect(fetched).toEqual(['a'])
    await cache.stop()
  })

  it('fetches an image ordered before its record arrived, once the record says active', async () => {
    const fetched: string[] = []
    const cache = await cacheFetchingInto(fetched)
    cache.order(undefined, 'b')
    cache.imageChanged({ id: 'b', status: 'queued', tags: [] })
    await settled()
    expect(fetched).toEqual([])
    cache.imageChanged({ id: 'b', status: 'active', tags: [] })
    await settled()
    expect(fetched).toEqual(['b'])
    // The order is spent: a later change of the record does not fetch it again.
    cache.imageChanged({ id: 'b', status: 'active', tags: ['x'] })
    await settled()
    expect(fetched).toEqual(['b'])
    await cache.stop()
  })

  it('drops an order whose record came too late', async () => {
    const fetched: string[] = []
    const cache = await cacheFetchingInto(fetched)
    cache.order(undefined, 'c', -1)
    cache.imageChanged({ id: 'c', status: 'active', tags: [] })
    await settled()
    expect(fetched).toEqual([])
    await cache.stop()
  })
})
