import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterEach, describe, expect, it } from 'vitest'
import { createMeshNode } from '../src/index.ts'
import type { MeshLibp2p } from '../src/index.ts'
import { until } from './fixtures.ts'

const TOPIC = 'peerglance/test/1'
const nodes: MeshLibp2p[] = []

afterEach(async () => {
  await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
})

describe('gossip between many agents on one IP address', () => {
  it('reaches every one of 15 peers on 127.0.0.1 (gossipsub would otherwise graylist each of them)', async () => {
    // 16 agents all connected to each other: 15 peers each on one address, past the 10 at which
    // gossipsub's IP colocation penalty starts (-5 per extra peer, squared: -125 here).
    for (let i = 0; i < 16; i++) {
      const node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), maxPeers: 20, pingIntervalMs: 60_000 })
      nodes.push(node)
      await node.start()
      node.services.pubsub.subscribe(TOPIC)
    }
    for (const [i, a] of nodes.entries()) for (const b of nodes.slice(i + 1)) await a.dial(b.getMultiaddrs()[0])
    await until(() => nodes.every(n => n.services.pubsub.getSubscribers(TOPIC).length === 15), 20_000, 'every subscription heard')
    // A few heartbeats, so that scores are computed and meshes built as they would be in service.
    await new Promise(resolve => setTimeout(resolve, 3_000))

    const heard = new Set<number>()
    // This topic only: peer announcements (peer-exchange.ts) arrive at any moment, at node 0 too.
    nodes.forEach((n, i) => { n.services.pubsub.addEventListener('message', evt => { if (evt.detail.topic === TOPIC) heard.add(i) }) })
    const { recipients } = await nodes[0].services.pubsub.publish(TOPIC, new TextEncoder().encode('hello'))
    expect(recipients).toHaveLength(15)
    await until(() => heard.size === 15, 15_000, 'the message at every other agent').catch(err => { throw new Error(`${(err as Error).message}: heard by ${heard.size}`) })
    expect(heard.has(0)).toBe(false)
  })
})
