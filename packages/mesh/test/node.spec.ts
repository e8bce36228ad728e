import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { loadOrCreatePeerKey, PEER_KEY_FILE } from '../src/index.ts'
import { cleanup, fullyConnected, readAll, seedImage, startAgent, stopAgent, until } from './fixtures.ts'
import { cidOf } from '@peerglance/interface'
import { freePort } from '@peerglance/testing'


describe('the mesh node', () => {
  afterEach(cleanup)

  it('keeps its peer id across restarts, in a key file only the owner can read', async () => {
    const first = await startAgent()
    const id = first.mesh.peerId
    expect(first.mesh.multiaddrs.every(a => a.endsWith(`/p2p/${id}`))).toBe(true)
    expect((await stat(join(first.dir, PEER_KEY_FILE))).mode & 0o777).toBe(0o600)
    await stopAgent(first)
    const again = await startAgent({ dir: first.dir })
    expect(again.mesh.peerId).toBe(id)
  })

  it('agents given one bootstrap address each spread into bounded peer sets, not a star, and stay one graph', async () => {
    const peerSet = { peerTarget: 3, maxPeers: 5 }
    const first = await startAgent({ init: peerSet })
    const others = await Promise.all(Array.from({ length: 11 }, async () => await startAgent({ bootstrap: first.mesh.multiaddrs, init: peerSet })))
    const all = [first, ...others]
    await until(() => all.every(a => a.mesh.connectedPeers().length >= 3), 20_000, 'every agent holding 3 peers').catch(err => {
      throw new Error(`${(err as Error).message}: degrees ${all.map(a => a.mesh.connectedPeers().length).join(' ')}`)
    })
    // The first agent sheds what it holds above the maximum (everyone dialled it first).
    await until(() => all.every(a => a.mesh.connectedPeers().length <= 5), 20_000, 'no agent above 5 peers')
    const degrees = all.map(a => a.mesh.connectedPeers().length)
    console.log(`peer degrees of 12 agents (target 3, max 5): ${degrees.join(' ')}`)
    // One graph: every agent reaches every other through connections.
    const ids = new Map(all.map(a => [a.mesh.peerId, a]))
    const seen = new Set([first.mesh.peerId])
    const queue = [first]
    while (queue.length > 0) {
      for (const peer of queue.pop()!.mesh.connectedPeers()) {
        if (!seen.has(peer) && ids.has(peer)) {
          seen.add(peer)
          queue.push(ids.get(peer)!)
        }
      }
    }
    expect(seen.size).toBe(12)

    // An image held by one agent is read byte-exact on an agent that is not its neighbour: the
    // reader asks the mesh (want), the holder dials it.
    const holder = others[0]
    const image = await seedImage(holder, 5 * 64 * 1024)
    const reader = all.find(a => a !== holder && !a.mesh.connectedPeers().includes(holder.mesh.peerId))!
    expect(reader).toBeDefined()
    const manifest = await reader.mesh.fetchManifest(image.imageId, cidOf(holder.manifests.get(image.imageId)!))
    expect(Buffer.from(manifest).equals(holder.manifests.get(image.imageId)!)).toBe(true)
    const got = await readAll(reader.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
    expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(image.bytes).digest('hex'))
  }, 60_000)

  it('three agents started in any order find each other through one bootstrap address', async () => {
    // A's address is known before A runs: its key is made up front and its port chosen.
    const dirA = await mkdtemp(join(tmpdir(), 'peerglance-mesh-'))
    const idA = peerIdFromPrivateKey(await loadOrCreatePeerKey(dirA)).toString()
    const port = await freePort()
    const addrA = `/ip4/127.0.0.1/tcp/${port}/p2p/${idA}`
    const b = await startAgent({ bootstrap: [addrA] })
    const c = await startAgent({ bootstrap: [addrA] })
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(b.mesh.connectedPeers()).toEqual([])
    const a = await startAgent({ dir: dirA, init: { listen: [`/ip4/127.0.0.1/tcp/${port}`] } })
    expect(a.mesh.peerId).toBe(idA)
    await fullyConnected([a, b, c], 15_000)

    // A bootstrap peer that restarts is dialled again.
    await stopAgent(a)
    await until(() => !b.mesh.connectedPeers().includes(idA), 5_000, 'B to notice A left')
    const a2 = await startAgent({ dir: dirA, init: { listen: [`/ip4/127.0.0.1/tcp/${port}`] } })
    await fullyConnected([a2, b, c], 15_000)
  })

  it('redials a lost peer as soon as it answers again, not at the next periodic check', async () => {
    const dirA = await mkdtemp(join(tmpdir(), 'peerglance-mesh-'))
    const port = await freePort()
    const listen = { listen: [`/ip4/127.0.0.1/tcp/${port}`] }
    const a = await startAgent({ dir: dirA, init: listen })
    const b = await startAgent({ bootstrap: a.mesh.multiaddrs })
    await fullyConnected([a, b], 15_000)
    await stopAgent(a)
    await until(() => b.mesh.connectedPeers().length === 0, 5_000, 'B to notice A left')
    // B's failed dials back off to redialMaxMs (500 ms in these tests); maintenance runs on its own
    // only every 10 s, so only a redial scheduled for the end of the backoff meets this bound.
    await new Promise(resolve => setTimeout(resolve, 2_000))
    const again = await startAgent({ dir: dirA, init: listen })
    const t0 = Date.now()
    await until(() => b.mesh.connectedPeers().includes(again.mesh.peerId), 5_000, 'B to redial A')
    console.log(`lost peer redialled ${Date.now() - t0} ms after it came back`)
  })

  it('with mDNS on, two agents that were told nothing of each other connect', async () => {
    const a = await startAgent({ init: { mdns: true } })
    const b = await startAgent({ init: { mdns: true } })
    await fullyConnected([a, b], 15_000)
  })

  it('our Noise crypto and the stock one interoperate (same wire format)', async () => {
    const stock = await startAgent({ init: { noiseCrypto: 'stock' } })
    const image = await seedImage(stock, 3 * 64 * 1024 + 5)
    const fast = await startAgent({ bootstrap: stock.mesh.multiaddrs, init: { noiseCrypto: 'fast' } })
    await fullyConnected([stock, fast])
    const got = await readAll(fast.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
    expect(got.equals(image.bytes)).toBe(true)
  })

  it('fetchManifest returns bytes that hash to the manifest CID and refuses others', async () => {
    const seed = await startAgent()
    const image = await seedImage(seed, 100_000)
    const leech = await startAgent({ bootstrap: seed.mesh.multiaddrs })
    await fullyConnected([seed, leech])
    const bytes = seed.manifests.get(image.imageId)!
    const got = await leech.mesh.fetchManifest(image.imageId, cidOf(bytes))
    expect(Buffer.from(got).equals(bytes)).toBe(true)
    await expect(leech.mesh.fetchManifest(image.imageId, cidOf(randomBytes(10)), { timeoutMs: 300 })).rejects.toMatchObject({ name: 'ChunkUnavailableError' })
    await expect(leech.mesh.fetchManifest('no-such-image', cidOf(bytes), { timeoutMs: 300 })).rejects.toMatchObject({ name: 'ChunkUnavailableError' })
  })

  it('reports traffic, cache hits and misses, fetch latency and peers on the given registry', async () => {
    const seed = await startAgent()
    const image = await seedImage(seed, 5 * 64 * 1024)
    const registry = new Registry()
    const leech = await startAgent({ bootstrap: seed.mesh.multiaddrs, init: {} })
    // A second mesh on its own registry: the metrics of two meshes never collide.
    await leech.mesh.stop()
    const { createMesh } = await import('../src/index.ts')
    const mesh = await createMesh({ chunks: leech.store, getManifestBytes: async () => undefined, registry }, { dataDir: leech.dir, bootstrap: seed.mesh.multiaddrs })
    await mesh.start()
    try {
      await until(() => mesh.connectedPeers().length === 1, 10_000, 'connection')
      await readAll(mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
      await until(async () => await mesh.localShare(image.manifest) === 1, 10_000, 'all chunks stored')
      await readAll(mesh.reader.read(image.imageId, image.manifest, 0, 10))
      const text = await registry.metrics()
      const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1])
      expect(value('peerglance_peer_bytes_received_total')).toBeGreaterThanOrEqual(image.manifest.size)
      expect(value('peerglance_peer_bytes_sent_total')).toBeGreaterThan(0)
      expect(value('peerglance_cache_misses_total')).toBe(5)
      expect(value('peerglance_cache_hits_total')).toBe(1)
      expect(value('peerglance_chunk_fetch_seconds_count')).toBe(5)
      expect(value('peerglance_connected_peers')).toBe(1)
      expect(seed.mesh.metrics.totals.bytesSent).toBeGreaterThanOrEqual(image.manifest.size)
    } finally {
      await mesh.stop()
    }
  })
})
