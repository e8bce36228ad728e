import { randomBytes } from 'node:crypto'
import { chmod, stat, writeFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { meshOf, peerIdOf, waitFor } from '@peerglance/testing'
import type { SpawnedAgent, TestMesh } from '@peerglance/testing'
import { chunkFiles, configFile, download, glance, localShare, logsMatching, metric, seedImage, sha512, meshPerTest } from './helpers.ts'

const MiB = 1024 * 1024
/** What the swarm logs (at warn) when a peer's chunk does not hash to its CID (packages/mesh/src/swarm.ts). */
const BAD_CHUNK_LOG = 'sent a chunk that does not match'

/** mesh.fetchTimeoutMs where a download is expected to find no source, to keep those tests short. */
const FETCH_TIMEOUT_MS = 1500

const { set: track, dirs } = meshPerTest()
let mesh: TestMesh

/** Downloads the image on `agent` and waits until it holds all of it. */
async function fetchWhole (agent: SpawnedAgent, id: string, data: Uint8Array): Promise<void> {
  const got = await download(agent.url, `/v2/images/${id}/file`)
  expect(got).toMatchObject({ status: 200, bytes: data.length, sha512: sha512(data) })
  await waitFor(async () => await localShare(agent.url, id) === 1, { what: `image ${id} whole on ${agent.url}` })
}

/** Overwrites each chunk file with random bytes of the same length, keeping its name (the CID). */
async function corrupt (paths: string[]): Promise<void> {
  for (const path of paths) {
    const { size } = await stat(path)
    await chmod(path, 0o644)
    await writeFile(path, randomBytes(size))
  }
}

describe('a peer that dies in the middle of a transfer', () => {
  it('does not stop the download: it finishes byte-exact from the other holder', async () => {
    mesh = track(await meshOf(3))
    const [holderA, holderB, downloader] = mesh.agents
    const data = randomBytes(150 * MiB + 777)
    const id = await seedImage(glance(holderA.url), [glance(holderB.url), glance(downloader.url)], data, 'big')
    // Both holders read the image once, so C sees two equal holders: a seed that never served it
    // comes after agents that have downloaded it (the seeding rule), and A would not be asked.
    await fetchWhole(holderA, id, data)
    await fetchWhole(holderB, id, data)

    const sentBefore = await metric(holderA.url, 'peerglance_peer_bytes_sent_total')
    let killedAt = -1
    let shareAtKill: number | null | undefined
    let killedT = 0
    let nextCheck = MiB
    const got = await download(downloader.url, `/v2/images/${id}/file`, {
      onBytes: async received => {
        if (killedAt >= 0 || received < nextCheck) return
        nextCheck = received + MiB
        // Kill A as soon as it has sent C a chunk, early enough that C's background fetch of the
        // rest (fast on loopback) is still running, so the kill lands while A is serving C.
        if (await metric(holderA.url, 'peerglance_peer_bytes_sent_total') - sentBefore < MiB) return
        killedAt = received
        expect(await holderA.kill('SIGKILL')).toBeNull()
        killedT = performance.now()
        shareAtKill = await localShare(downloader.url, id)
      }
    })
    console.log(`A killed when the client had ${(killedAt / MiB).toFixed(1)} MiB and C held ${((shareAtKill ?? 0) * 100).toFixed(0)} % of the image; the download ended ${(performance.now() - killedT).toFixed(0)} ms later`)
    expect(killedAt).toBeGreaterThan(0)
    expect(shareAtKill).toBeLessThan(1)
    expect(got.error).toBeUndefined()
    expect(got).toMatchObject({ status: 200, bytes: data.length, sha512: sha512(data) })
    await waitFor(async () => await localShare(downloader.url, id) === 1, { what: 'C holding the whole image' })
  })

  it('when it was the only source, ends the download with an error after nothing but right bytes', async () => {
    const config = await configFile(`mesh:\n  fetchTimeoutMs: ${FETCH_TIMEOUT_MS}\n`, dirs)
    mesh = track(await meshOf(2, { args: ['--config', config] }))
    const [holder, downloader] = mesh.agents
    const data = randomBytes(64 * MiB + 5)
    const id = await seedImage(glance(holder.url), [glance(downloader.url)], data, 'only-source')
    let killedT = 0
    const got = await download(downloader.url, `/v2/images/${id}/file`, {
      onBytes: async received => {
        if (killedT > 0 || received < 8 * MiB) return
        expect(await holder.kill('SIGKILL')).toBeNull()
        killedT = performance.now()
      }
    })
    const share = await localShare(downloader.url, id)
    console.log(`only source killed: the client got ${(got.bytes / MiB).toFixed(1)} MiB and "${got.error?.message}" ${(performance.now() - killedT).toFixed(0)} ms after the kill; B holds ${((share ?? 0) * 100).toFixed(0)} %`)
    expect(killedT).toBeGreaterThan(0)
    expect(share).toBeLessThan(1)
    // The status line went out before A died, so the failure can only show as a cut-off body.
    expect(got.status).toBe(200)
    expect(got.error).toBeInstanceOf(Error)
    expect(got.bytes).toBeLessThan(data.length)
    expect(got.sha512).toBe(sha512(data.subarray(0, got.bytes)))
    // The agent says why it cut the download off.
    const cutOff = logsMatching(downloader.logs, 'download cut off')
    expect(cutOff).toHaveLength(1)
    expect(cutOff[0]).toMatchObject({ level: 40, imageId: id, err: { type: 'ChunkUnavailableError' } })
  })
})

describe('a peer that serves corrupted chunks', () => {
  it('is detected and avoided, and the download finishes byte-exact from an honest holder', async () => {
    mesh = track(await meshOf(3))
    const [bad, honest, downloader] = mesh.agents
    const [a, b, c] = mesh.agents.map(agent => glance(agent.url))
    const first = randomBytes(24 * MiB + 99)
    const firstId = await seedImage(a, [b, c], first, 'first')
    const firstChunks = (await chunkFiles(bad.dataDir)).map(([, path]) => path)
    expect(firstChunks).toHaveLength(25)
    const second = randomBytes(16 * MiB)
    const secondId = await seedImage(a, [b, c], second, 'second')
    // Both holders read both images once, so C treats them alike (see the test above).
    for (const holder of [bad, honest]) {
      await fetchWhole(holder, firstId, first)
      await fetchWhole(holder, secondId, second)
    }

    // Every chunk of the first image on A now holds other bytes under its CID.
    await corrupt(firstChunks)
    const got = await download(downloader.url, `/v2/images/${firstId}/file`)
    expect(got.error).toBeUndefined()
    expect(got).toMatchObject({ status: 200, bytes: first.length, sha512: sha512(first) })

    const badId = peerIdOf(bad)
    const detected = logsMatching(downloader.logs, BAD_CHUNK_LOG)
    console.log(`C logged ${detected.length} bad chunk(s): ${String(detected[0]?.msg)}`)
    expect(detected.length).toBeGreaterThan(0)
    for (const line of detected) {
      expect(line.level).toBe(40)
      expect(line.msg).toContain(badId)
    }

    // A's copy of the second image is intact, yet C takes none of it from A any more.
    const sentByBad = await metric(bad.url, 'peerglance_peer_bytes_sent_total')
    const sentByHonest = await metric(honest.url, 'peerglance_peer_bytes_sent_total')
    const again = await download(downloader.url, `/v2/images/${secondId}/file`)
    expect(again).toMatchObject({ status: 200, bytes: second.length, sha512: sha512(second) })
    // A may still answer small requests (the manifest), never a chunk.
    expect(await metric(bad.url, 'peerglance_peer_bytes_sent_total') - sentByBad).toBeLessThan(64 * 1024)
    expect(await metric(honest.url, 'peerglance_peer_bytes_sent_total') - sentByHonest).toBeGreaterThanOrEqual(second.length)
    expect(logsMatching(downloader.logs, BAD_CHUNK_LOG)).toHaveLength(detected.length)
  })

  it('when it is the only holder, the client gets a 503 and none of its bytes', async () => {
    const config = await configFile(`mesh:\n  fetchTimeoutMs: ${FETCH_TIMEOUT_MS}\n`, dirs)
    mesh = track(await meshOf(2, { args: ['--config', config] }))
    const [bad, downloader] = mesh.agents
    const data = randomBytes(6 * MiB)
    const id = await seedImage(glance(bad.url), [glance(downloader.url)], data, 'only-bad')
    await corrupt((await chunkFiles(bad.dataDir)).map(([, path]) => path))
    const got = await download(downloader.url, `/v2/images/${id}/file`)
    // Glance's error page: "No peer holds chunk 0 (<cid>) of image <id>."
    expect(got.status).toBe(503)
    expect(got.bytes).toBeLessThan(4096)
    expect(got.head.toString('utf8')).toContain('503 Service Unavailable')
    expect(got.head.toString('utf8')).toContain(id)
    expect(logsMatching(downloader.logs, BAD_CHUNK_LOG).length).toBeGreaterThan(0)
    expect(await localShare(downloader.url, id)).toBe(0)
  })
})
