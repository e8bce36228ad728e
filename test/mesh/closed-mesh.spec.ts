import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { noise } from '@chainsafe/libp2p-noise'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { CHUNK_PROTOCOL, METADATA_SYNC_PROTOCOL, METADATA_TOPIC, Membership, bulkAuth, createMeshNode, dialBulk, loadOrCreatePeerKey, mintCredential } from '@peerglance/mesh'
import { agentStatus, freePort, meshOf, multiaddrOf, peerIdOf, tmpDir, waitConnected, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { configFile, glance, meshPerTest } from './helpers.ts'

const BIN = fileURLToPath(new URL('../../packages/agent/bin/peerglance.js', import.meta.url))
const { set: track, dirs } = meshPerTest()
let mesh: TestMesh

/** A stock libp2p node, as anyone could run: TCP, Noise, yamux, identify, gossipsub. */
async function plainNode (): Promise<Libp2p<{ pubsub: GossipSub }>> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) as any }
  })
  return node as unknown as Libp2p<{ pubsub: GossipSub }>
}

/** Every way an outsider could get something from an agent, each expected to fail. */
async function expectShutOut (node: Libp2p<{ pubsub: GossipSub }>, target: string): Promise<void> {
  const addr = multiaddr(target)
  await expect(node.dial(addr, { signal: AbortSignal.timeout(5000) })).rejects.toThrow()
  for (const protocol of [METADATA_SYNC_PROTOCOL, CHUNK_PROTOCOL, '/ipfs/id/1.0.0', '/meshsub/1.1.0']) {
    await expect(node.dialProtocol(addr, protocol, { signal: AbortSignal.timeout(5000) })).rejects.toThrow()
  }
  expect(node.getConnections()).toEqual([])
}

describe('a closed mesh', () => {
  it('shuts out a stock libp2p node and a node with another mesh key: no connection, no gossip, no digest, no manifest, no chunk, no peers', async () => {
    const right = await configFile('mesh:\n  key: the-mesh-key-0123456789abcdef\n', dirs)
    mesh = track(await meshOf(2, { argsOf: () => ['--config', right] }))
    const [a, b] = mesh.agents
    const image = await glance(a.url).create({ name: 'private-one', visibility: 'private' })
    await glance(a.url).upload(image.id, new Uint8Array(1024 * 1024).fill(7))
    await waitFor(async () => (await glance(b.url).find(image.id))?.status === 'active', { what: 'B seeing the image' })

    const plain = await plainNode()
    const keyed = await createMeshNode({ dataDir: await tmpDir('peerglance-outsider-'), membership: { secret: 'another-key' } })
    const heard: unknown[] = []
    try {
      await plain.start()
      await keyed.start()
      plain.services.pubsub.subscribe(METADATA_TOPIC)
      plain.services.pubsub.addEventListener('message', evt => { heard.push(evt.detail) })
      for (const outsider of [plain, keyed as unknown as Libp2p<{ pubsub: GossipSub }>]) {
        await expectShutOut(outsider, multiaddrOf(a))
        await expectShutOut(outsider, multiaddrOf(b))
      }
      // The agents may dial an outsider too (B is told of it as a bootstrap peer below): they drop it.
      await glance(a.url).patch(image.id, [{ op: 'add', path: '/secret', value: 'x' }])
      await sleep(500)
      expect(heard).toEqual([])
      expect(plain.getPeers()).toEqual([])
      expect(keyed.getPeers()).toEqual([])
      // Neither agent counts an outsider among its peers.
      for (const agent of [a, b]) expect((await agentStatus(agent.url)).peers).toEqual([peerIdOf(agent === a ? b : a)])
    } finally {
      await plain.stop()
      await keyed.stop()
    }
  })

  it('refuses an outsider on the bulk channel (TLS keyed to peer ids): another mesh key, the right key but a revoked peer id', async () => {
    const root = await tmpDir('peerglance-bulk-outsider-')
    dirs.push(root)
    const outsiderKey = await generateKeyPair('Ed25519')
    const outsiderId = peerIdFromPrivateKey(outsiderKey).toString()
    const ports = [await freePort(), await freePort()]
    const configs = await Promise.all(ports.map(async port => await configFile(`mesh:\n  key: the-mesh-key-0123456789abcdef\n  bulkPort: ${port}\n  revokedPeers: [${outsiderId}]\n`, dirs)))
    mesh = track(await meshOf(2, { argsOf: i => ['--config', configs[i]] }))
    const [a, b] = mesh.agents
    const image = await glance(a.url).create({ name: 'bulk-private', visibility: 'private' })
    const bytes = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251)
    await glance(a.url).upload(image.id, bytes)
    // B reads it through the bulk channel: members get in.
    await waitFor(async () => (await glance(b.url).find(image.id))?.status === 'active', { what: 'B seeing the image' })
    const res = await glance(b.url).call(`/v2/images/${image.id}/file`)
    expect(res.status).toBe(200)
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true)
    const target = peerIdFromString(peerIdOf(a))
    // Outsiders accept whatever A shows (as an attacker would): only A's own checks can stop them.
    const asOutsider = (key: typeof outsiderKey, secret: string): ReturnType<typeof bulkAuth> =>
      bulkAuth(key, mintCredential(secret, peerIdFromPrivateKey(key).toString()), new Membership({ secret: 'the-mesh-key-0123456789abcdef' }))
    // Another mesh's key (a peer id nobody revoked): A refuses its credential before any frame.
    await expect(dialBulk('127.0.0.1', ports[0], target, asOutsider(await generateKeyPair('Ed25519'), 'another-key')!, AbortSignal.timeout(5000))).rejects.toThrow()
    // The mesh key, but A has revoked this peer id.
    await expect(dialBulk('127.0.0.1', ports[0], target, asOutsider(outsiderKey, 'the-mesh-key-0123456789abcdef')!, AbortSignal.timeout(5000))).rejects.toThrow()
    // A fresh peer id with the mesh key is a member, as on libp2p: the key is the mesh's secret.
    const fresh = await generateKeyPair('Ed25519')
    const freshId = peerIdFromPrivateKey(fresh).toString()
    const member = await dialBulk('127.0.0.1', ports[0], target, bulkAuth(fresh, mintCredential('the-mesh-key-0123456789abcdef', freshId), new Membership({ secret: 'the-mesh-key-0123456789abcdef' }))!, AbortSignal.timeout(5000))
    member.destroy()
  })

  it('keeps an agent with another key apart: it neither gets the mesh\'s images nor gives its own', async () => {
    const right = await configFile('mesh:\n  key: the-mesh-key-0123456789abcdef\n', dirs)
    const wrong = await configFile('mesh:\n  key: some-other-key\n', dirs)
    mesh = track(await meshOf(2, { argsOf: () => ['--config', right] }))
    const [first, member] = mesh.agents
    const outsider = await mesh.add({ args: ['--config', wrong] })
    const before = await glance(first.url).create({ name: 'made-on-a' })
    const fromE = await glance(outsider.url).create({ name: 'made-on-e' })
    await waitFor(async () => await glance(member.url).find(before.id) != null, { what: 'the member seeing A\'s image' })
    await sleep(1000)
    expect((await glance(outsider.url).list()).map(i => i.id)).toEqual([fromE.id])
    expect(await glance(first.url).find(fromE.id)).toBeUndefined()
    expect((await agentStatus(outsider.url)).peers).toEqual([])
    expect((await agentStatus(first.url)).peers).toEqual([peerIdOf(member)])
  })

  it('refuses a revoked agent even though it holds the mesh key', async () => {
    const root = await tmpDir('peerglance-revoked-')
    dirs.push(root)
    const revokedDir = join(root, 'revoked')
    await mkdir(revokedDir, { recursive: true })
    const revokedId = peerIdFromPrivateKey(await loadOrCreatePeerKey(revokedDir)).toString()
    const members = await configFile(`mesh:\n  key: the-mesh-key-0123456789abcdef\n  revokedPeers: [${revokedId}]\n`, dirs)
    const plainKey = await configFile('mesh:\n  key: the-mesh-key-0123456789abcdef\n', dirs)
    mesh = track(await meshOf(2, { argsOf: () => ['--config', members] }))
    const revoked = await mesh.add({ dataDir: revokedDir, args: ['--config', plainKey] })
    expect(peerIdOf(revoked)).toBe(revokedId)
    const made = await glance(revoked.url).create({ name: 'from-the-revoked' })
    const other = await glance(mesh.agents[0].url).create({ name: 'from-a-member' })
    await waitFor(async () => await glance(mesh.agents[1].url).find(other.id) != null, { what: 'members converging' })
    await sleep(1000)
    expect(await glance(mesh.agents[0].url).find(made.id)).toBeUndefined()
    expect(await glance(revoked.url).find(other.id)).toBeUndefined()
    expect((await agentStatus(revoked.url)).peers).toEqual([])
    await waitConnected(mesh.agents.slice(0, 2))
  })

  it('admits agents by operator-signed credentials, made by peerglance credential, and no one else', async () => {
    const root = await tmpDir('peerglance-operator-')
    dirs.push(root)
    const run = promisify(execFile)
    const credential = async (operatorKey: string, dataDir: string, days = '30'): Promise<{ file: string, operator: string }> => {
      const { stdout, stderr } = await run(process.execPath, [BIN, 'credential', '--operator-key', operatorKey, '--data-dir', dataDir, '--days', days])
      const file = `${dataDir}.credential`
      await writeFile(file, stdout)
      return { file, operator: /operator key (\S+)/.exec(stderr)![1] }
    }
    const dirsOf = ['a', 'b', 'c'].map(n => join(root, n))
    for (const d of dirsOf) await mkdir(d, { recursive: true })
    const good = await Promise.all(dirsOf.slice(0, 2).map(async d => await credential(join(root, 'operator.key'), d)))
    const rogue = await credential(join(root, 'rogue-operator.key'), dirsOf[2])
    const configOf = async (file: string): Promise<string> => await configFile(`mesh:\n  operatorKey: ${good[0].operator}\n  credentialFile: ${file}\n`, dirs)
    const configs = [await configOf(good[0].file), await configOf(good[1].file), await configOf(rogue.file)]
    mesh = track(await meshOf(0))
    const a = await mesh.add({ dataDir: dirsOf[0], args: ['--config', configs[0]] })
    const b = await mesh.add({ dataDir: dirsOf[1], args: ['--config', configs[1], '--bootstrap', multiaddrOf(a)], bootstrap: false })
    // 30 s, not 10: in one full-suite run in three B had not connected to its only bootstrap (A)
    // after 10 s; not reproduced alone (an open bug; peer exchange logs its dials to libp2p's
    // DEBUG logger, not to the agent's log, so the agent's log could not say why).
    await waitConnected([a, b], 30_000)
    const c = await mesh.add({ dataDir: dirsOf[2], args: ['--config', configs[2], '--bootstrap', multiaddrOf(a)], bootstrap: false })
    const made = await glance(a.url).create({ name: 'operator-mesh' })
    await waitFor(async () => await glance(b.url).find(made.id) != null, { what: 'B seeing A\'s image' })
    await sleep(1000)
    expect(await glance(c.url).find(made.id)).toBeUndefined()
    expect((await agentStatus(c.url)).peers).toEqual([])
    // An agent whose credential names another peer does not even start.
    const d = join(root, 'd')
    await mkdir(d)
    const failed = await run(process.execPath, [BIN, 'agent', '--data-dir', d, '--api-listen', '127.0.0.1:0', '--config', configs[0]], { timeout: 20_000 }).then(() => undefined, (err: { stdout: string }) => err)
    expect(failed?.stdout).toContain('the mesh credential names peer')
  })

  it('will not start with an empty mesh key on an address other hosts can reach', async () => {
    const dataDir = await tmpDir('peerglance-open-')
    dirs.push(dataDir)
    const run = promisify(execFile)(process.execPath, [BIN, 'agent', '--data-dir', dataDir, '--api-listen', '127.0.0.1:0', '--p2p-listen', '/ip4/0.0.0.0/tcp/0'], { timeout: 20_000 })
    const failed = await run.then(() => undefined, (err: { code: number, stdout: string }) => err)
    expect(failed?.code).toBe(1)
    expect(failed?.stdout).toContain('mesh.key is empty but the mesh listens on /ip4/0.0.0.0/tcp/0')
  })
})
