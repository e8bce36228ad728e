import { randomBytes } from 'node:crypto'
import { meshOf, waitFor } from '@peerglance/testing'
import { describe, expect, it } from 'vitest'
import { configFile, download, glance, localShare, meshPerTest, seedImage, sha512 } from './helpers.ts'

// Per-image transfer metrics: bytes each image sent to clients, fetched from peers and sent to
// peers, as series labelled with the image id only while the agent holds the image.

const { set, dirs } = meshPerTest()
const MiB = 1024 * 1024

/** The value of `name{image="<id>"}` in the agent's /metrics, or undefined when there is no such series. */
async function imageSeries (url: string, name: string, id: string): Promise<number | undefined> {
  const text = await (await fetch(new URL('/metrics', url))).text()
  const line = text.split('\n').find(l => l.startsWith(`${name}{image="${id}"} `))
  return line == null ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}

describe('per-image transfer metrics', () => {
  it('count each image\'s bytes to clients, from peers and to peers, and drop its series when it is evicted or deleted', async () => {
    const evictable = ['--config', await configFile("cache:\n  minReplicas: 1\n  reserveBytes: '0'\n", dirs)]
    const mesh = set(await meshOf(2, { argsOf: i => i === 1 ? evictable : [] }))
    const [a, b] = mesh.agents.map(x => glance(x.url))
    const bytes = randomBytes(3 * MiB + 12_345)
    const id = await seedImage(a, [b], bytes, 'counted')
    const other = await seedImage(a, [b], randomBytes(MiB), 'not read')

    expect((await download(b.url, `/v2/images/${id}/file`)).sha512).toBe(sha512(bytes))
    await waitFor(async () => await localShare(b.url, id) === 1, { what: 'the image whole on B' })
    // B: one client download, every chunk fetched once from A (the only holder).
    expect(await imageSeries(b.url, 'peerglance_image_client_bytes_served_total', id)).toBe(bytes.length)
    expect(await imageSeries(b.url, 'peerglance_image_peer_bytes_received_total', id)).toBe(bytes.length)
    expect(await imageSeries(b.url, 'peerglance_image_peer_bytes_sent_total', id)).toBeUndefined()
    // A: sent every chunk to B (more only if a request was retried), served no client.
    await waitFor(async () => (await imageSeries(a.url, 'peerglance_image_peer_bytes_sent_total', id) ?? 0) >= bytes.length, { what: 'A counting the bytes it sent' })
    expect(await imageSeries(a.url, 'peerglance_image_client_bytes_served_total', id)).toBeUndefined()
    // An image that moved no byte has no series anywhere.
    for (const agent of [a, b]) {
      for (const name of ['peerglance_image_client_bytes_served_total', 'peerglance_image_peer_bytes_received_total', 'peerglance_image_peer_bytes_sent_total']) {
        expect(await imageSeries(agent.url, name, other)).toBeUndefined()
      }
    }

    // Evicted from B's cache (A still holds it): B's series for it go; A's stay.
    expect((await b.call(`/v2/cache/${id}`, { method: 'DELETE' })).status).toBe(204)
    await waitFor(async () => await localShare(b.url, id) === 0, { what: 'the image evicted on B' })
    expect(await imageSeries(b.url, 'peerglance_image_client_bytes_served_total', id)).toBeUndefined()
    expect(await imageSeries(b.url, 'peerglance_image_peer_bytes_received_total', id)).toBeUndefined()
    expect(await imageSeries(a.url, 'peerglance_image_peer_bytes_sent_total', id)).toBeGreaterThanOrEqual(bytes.length)

    // Deleted: gone on A too.
    expect((await a.call(`/v2/images/${id}`, { method: 'DELETE' })).status).toBe(204)
    expect(await imageSeries(a.url, 'peerglance_image_peer_bytes_sent_total', id)).toBeUndefined()
  })
})
