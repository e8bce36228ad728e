import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { MeshMetrics } from '../src/index.ts'

async function series (registry: Registry): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter(l => l.startsWith('peerglance_image_'))
}

describe('per-image series', () => {
  it('are kept for the most recently active images only, and dropped with an image', async () => {
    const registry = new Registry()
    const metrics = new MeshMetrics({ registry, maxImageSeries: 2 })
    metrics.served('a', 10)
    metrics.imageReceived('b', 20)
    metrics.imageSent('a', 5)
    // c is the third image: b, the least recently active, loses its series.
    metrics.imageSent('c', 7)
    expect(await series(registry)).toEqual([
      'peerglance_image_client_bytes_served_total{image="a"} 10',
      'peerglance_image_peer_bytes_sent_total{image="a"} 5',
      'peerglance_image_peer_bytes_sent_total{image="c"} 7'
    ])
    metrics.forget('a')
    expect(await series(registry)).toEqual(['peerglance_image_peer_bytes_sent_total{image="c"} 7'])
    // The totals keep counting whatever the series.
    expect(metrics.totals.clientBytesServed).toBe(10)
    expect((await registry.metrics()).split('\n')).toContain('peerglance_client_bytes_served_total 10')
  })
})

describe('chunk fetches', () => {
  it('are read by scheduling step and source, and failures by error, when scraped', async () => {
    const registry = new Registry()
    const fetches: Record<string, number> = { 'mine/from-seed': 3 }
    const metrics = new MeshMetrics({ registry, fetches: () => fetches })
    expect(metrics.fetches).toBeDefined()
    fetches['mine/from-seed/SentElsewhereError'] = 1
    const lines = (await registry.metrics()).split('\n')
    expect(lines).toContain('peerglance_chunk_fetches{kind="mine/from-seed"} 3')
    expect(lines).toContain('peerglance_chunk_fetches{kind="mine/from-seed/SentElsewhereError"} 1')
  })
})
