import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { agentStatus, meshOf, peerIdOf, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { configFile, download, glance, localShare, md5, metric, seedImage, sha512, meshPerTest } from './helpers.ts'

const MiB = 1024 * 1024
/** mesh.fetchTimeoutMs for the "nobody holds it" case, and what a 503 may take beyond it. */
const FETCH_TIMEOUT_MS = 1500
const SLACK_MS = 3000

const { set: track, dirs } = meshPerTest()
let mesh: TestMesh

describe('a download on an agent that lacks the bytes', () => {
  it('streams them from a peer byte-exact, Range included, and serves them later from its own disk', async () => {
    mesh = track(await meshOf(2))
    const [first, second] = mesh.agents
    const a = glance(first.url)
    const b = glance(second.url)
    const data = randomBytes(40 * MiB + 12_345)
    const id = await seedImage(a, [b], data)
    // Nothing held yet (null: B fetches the manifest only on the first download).
    expect(await localShare(second.url, id) ?? 0).toBe(0)

    // A range across chunk boundaries, before B holds anything.
    const [from, to] = [5 * MiB - 100, 23 * MiB + 7]
    const part = await download(second.url, `/v2/images/${id}/file`, { headers: { range: `bytes=${from}-${to}` } })
    expect(part.error).toBeUndefined()
    expect(part.status).toBe(206)
    expect(part.headers.get('content-range')).toBe(`bytes ${from}-${to}/${data.length}`)
    expect(part.bytes).toBe(to - from + 1)
    expect(part.sha512).toBe(sha512(data.subarray(from, to + 1)))

    const whole = await download(second.url, `/v2/images/${id}/file`)
    expect(whole.error).toBeUndefined()
    expect(whole.status).toBe(200)
    expect(whole.headers.get('content-length')).toBe(String(data.length))
    expect(whole.headers.get('content-md5')).toBe(md5(data))
    expect(whole.bytes).toBe(data.length)
    expect(whole.sha512).toBe(sha512(data))
    expect(whole.md5).toBe(md5(data))
    expect(await metric(second.url, 'peerglance_peer_bytes_received_total')).toBeGreaterThanOrEqual(data.length)

    // B keeps the whole image; with A stopped it serves it from disk alone.
    await waitFor(async () => await localShare(second.url, id) === 1, { what: 'B holding the whole image' })
    expect(await first.kill('SIGTERM')).toBe(0)
    await waitFor(async () => (await agentStatus(second.url)).peers.length === 0, { what: 'B seeing A gone' })
    const received = await metric(second.url, 'peerglance_peer_bytes_received_total')
    const misses = await metric(second.url, 'peerglance_cache_misses_total')
    const again = await download(second.url, `/v2/images/${id}/file`)
    expect(again).toMatchObject({ status: 200, bytes: data.length, sha512: sha512(data) })
    expect(again.error).toBeUndefined()
    expect(await metric(second.url, 'peerglance_peer_bytes_received_total')).toBe(received)
    expect(await metric(second.url, 'peerglance_cache_misses_total')).toBe(misses)
    expect(await localShare(second.url, id)).toBe(1)
  })

  it('gets a clean 503 with a message, never wrong bytes, when no peer holds them', async () => {
    const config = await configFile(`mesh:\n  fetchTimeoutMs: ${FETCH_TIMEOUT_MS}\n`, dirs)
    mesh = track(await meshOf(2, { args: ['--config', config] }))
    const [first, second] = mesh.agents
    const b = glance(second.url)
    const data = randomBytes(4 * MiB + 1)
    const id = await seedImage(glance(first.url), [b], data)

    expect(await first.kill('SIGKILL')).toBeNull()
    await waitFor(async () => (await agentStatus(second.url)).peers.length === 0, { what: 'B seeing A gone' })
    const t0 = performance.now()
    const res = await download(second.url, `/v2/images/${id}/file`)
    const ms = performance.now() - t0
    console.log(`no holder: ${res.status} after ${ms.toFixed(0)} ms (fetchTimeoutMs ${FETCH_TIMEOUT_MS})`)
    expect(res.status).toBe(503)
    expect(ms).toBeLessThan(FETCH_TIMEOUT_MS + SLACK_MS)
    expect(res.bytes).toBeLessThan(4096)
    // Glance's error page, saying what is missing: "No peer could send the manifest of image <id>."
    const message = res.head.toString('utf8')
    expect(message).toContain('503 Service Unavailable')
    expect(message).toContain(id)
    // The image itself is untouched: still active, still 4 MiB, still nothing held here.
    expect(await b.image(id)).toMatchObject({ status: 'active', size: data.length })
    expect(await localShare(second.url, id) ?? 0).toBe(0)
  })
})

describe('an agent restarted on the same data dir', () => {
  it('keeps its peer id and the chunks it downloaded, and serves them with the uploader gone', async () => {
    mesh = track(await meshOf(2))
    const [first, second] = mesh.agents
    const data = randomBytes(8 * MiB + 3)
    const id = await seedImage(glance(first.url), [glance(second.url)], data)
    const got = await download(second.url, `/v2/images/${id}/file`)
    expect(got).toMatchObject({ status: 200, sha512: sha512(data) })
    await waitFor(async () => await localShare(second.url, id) === 1, { what: 'B holding the whole image' })
    const peerId = (await agentStatus(second.url)).peerId
    expect(peerId).toBe(peerIdOf(second))

    expect(await second.kill('SIGTERM')).toBe(0)
    expect(await first.kill('SIGKILL')).toBeNull()
    // It still has A as its bootstrap peer, which no longer answers.
    const restarted = await mesh.add({ dataDir: second.dataDir })
    const status = await agentStatus(restarted.url)
    expect(status.peerId).toBe(peerId)
    expect(status.peers).toEqual([])
    expect(status.images.find(i => i.id === id)).toMatchObject({ status: 'active', size: data.length, localShare: 1 })
    const again = await download(restarted.url, `/v2/images/${id}/file`)
    expect(again).toMatchObject({ status: 200, bytes: data.length, sha512: sha512(data) })
    expect(again.headers.get('content-md5')).toBe(md5(data))
    expect(await metric(restarted.url, 'peerglance_cache_misses_total')).toBe(0)
    expect(await metric(restarted.url, 'peerglance_peer_bytes_received_total')).toBe(0)
  })
})
