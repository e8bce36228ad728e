// Jepsen-style: five agents, each in its own network namespace on one bridge. Each round moves a
// random minority of them onto a second bridge (a partition: each side still talks within itself)
// for some seconds while random writes go to agents on both sides, SIGKILLs one cut agent and
// restarts it on its data dir, then heals. After every heal all five must hold the same state
// (the replicated state's root digest, and every image document) within a few seconds.
//
// Needs root and iproute2. Everything it creates lives in namespaces named converge-<id>-*, plus
// one control veth per agent in the root namespace (cvg<id><i>, to reach each agent's API on both
// sides of a cut); afterAll deletes exactly those. The randomness is seeded (a fixed seed unless
// PARTITION_SEED=<n> is given; it is logged), so a run's choices replay; timing still varies.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { agentStatus, multiaddrOf, spawnAgent, tmpDir, waitFor } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'
import { glance } from './helpers.ts'
import type { Glance, Image } from './helpers.ts'

const run = promisify(execFile)
const N = 5
const ROUNDS = 3
const CUT_MS = 8_000
const WRITES_PER_ROUND = 40
/** After a heal, every agent must hold the same state within this long. */
const HEAL_CONVERGE_MS = 8_000
const SEED = Number(process.env.PARTITION_SEED ?? 20261129)

/** mulberry32: small, seeded, good enough to pick writes. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

async function ip (...args: string[]): Promise<void> {
  await run('ip', args, { timeout: 10_000 })
}

/** Two bridges in a namespace of their own, and one namespace per agent with a leg on the first. */
class Net {
  readonly id = `${(process.pid % 1296).toString(36).padStart(2, '0')}${randomBytes(3).toString('hex')}`
  readonly bridgeNs = `converge-${this.id}-br`
  readonly namespaces: string[] = []
  readonly controls: string[] = []
  /** 10.<controlNet>.<i>.0/30: the root namespace's path to agent i's API. */
  controlNet = 0

  agentNs (i: number): string { return `converge-${this.id}-a${i}` }
  dataIp (i: number): string { return `10.77.0.${i + 1}` }
  apiHost (i: number): string { return `10.${this.controlNet}.${i}.2` }

  async create (): Promise<void> {
    const { stdout } = await run('ip', ['-4', 'addr'])
    const used = new Set([...stdout.matchAll(/inet 10\.(\d+)\./g)].map(m => Number(m[1])))
    this.controlNet = [...Array(100).keys()].map(k => 150 + k).find(k => !used.has(k)) ?? 0
    if (this.controlNet === 0) throw new Error('no free 10.x.0.0/16 for the control network')
    await ip('netns', 'add', this.bridgeNs)
    this.namespaces.push(this.bridgeNs)
    for (const br of ['br0', 'br1']) {
      await ip('-n', this.bridgeNs, 'link', 'add', br, 'type', 'bridge')
      await ip('-n', this.bridgeNs, 'link', 'set', br, 'up')
    }
    for (let i = 0; i < N; i++) {
      const ns = this.agentNs(i)
      await ip('netns', 'add', ns)
      this.namespaces.push(ns)
      await ip('-n', ns, 'link', 'set', 'lo', 'up')
      await ip('-n', this.bridgeNs, 'link', 'add', `p${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
      await ip('-n', this.bridgeNs, 'link', 'set', `p${i}`, 'master', 'br0', 'up')
      await ip('-n', ns, 'addr', 'add', `${this.dataIp(i)}/24`, 'dev', 'eth0')
      await ip('-n', ns, 'link', 'set', 'eth0', 'up')
      const control = `cvg${this.id}${i}`
      await ip('link', 'add', control, 'type', 'veth', 'peer', 'name', 'ctl', 'netns', ns)
      this.controls.push(control)
      await ip('addr', 'add', `10.${this.controlNet}.${i}.1/30`, 'dev', control)
      await ip('link', 'set', control, 'up')
      await ip('-n', ns, 'addr', 'add', `${this.apiHost(i)}/30`, 'dev', 'ctl')
      await ip('-n', ns, 'link', 'set', 'ctl', 'up')
    }
  }

  /** Moves the agents onto the second bridge (cut) or back onto the first (heal). */
  async place (agents: number[], bridge: 'br0' | 'br1'): Promise<void> {
    for (const i of agents) await ip('-n', this.bridgeNs, 'link', 'set', `p${i}`, 'master', bridge)
  }

  /** Deletes what this run created, and only that: each control veth's other end dies with its namespace. */
  async destroy (): Promise<void> {
    for (const control of this.controls) await ip('link', 'del', control).catch(() => {})
    for (const ns of this.namespaces.reverse()) await ip('netns', 'del', ns).catch(() => {})
  }
}

interface Node { agent: SpawnedAgent, api: Glance, dataDir: string, args: string[] }

describe(`partitions with concurrent writes and a SIGKILLed agent heal to identical state on ${N} agents (seed ${SEED})`, () => {
  const net = new Net()
  const nodes: Node[] = []
  let root = ''
  /** Agents off loopback refuse to start without a mesh key. */
  let config = ''

  async function start (i: number, args: string[]): Promise<void> {
    const dataDir = nodes[i]?.dataDir ?? join(root, `agent-${i}`)
    await mkdir(dataDir, { recursive: true })
    const agent = await spawnAgent({
      dataDir,
      prefix: ['ip', 'netns', 'exec', net.agentNs(i)],
      apiListen: `${net.apiHost(i)}:9292`,
      args: ['--config', config, '--p2p-listen', `/ip4/${net.dataIp(i)}/tcp/4001`, ...args],
      timeoutMs: 30_000
    })
    nodes[i] = { agent, api: glance(agent.url), dataDir, args }
  }

  beforeAll(async () => {
    console.log(`partition test: seed ${SEED} (PARTITION_SEED=${SEED} replays its choices), namespaces converge-${net.id}-*`)
    root = await tmpDir('peerglance-partitions-')
    config = join(root, 'peerglance.yaml')
    // The API listens on the namespace address: noauth off loopback must be allowed explicitly.
    await writeFile(config, `mesh:\n  key: ${randomBytes(32).toString('hex')}\nauth:\n  noauth:\n    allowRemote: true\n`)
    try {
      await net.create()
      await start(0, [])
      const seed = multiaddrOf(nodes[0].agent)
      // Each of the others is given the first agent's address only; peer exchange does the rest.
      await Promise.all(Array.from({ length: N - 1 }, async (_, k) => { await start(k + 1, ['--bootstrap', seed]) }))
      await waitFor(async () => {
        const statuses = await Promise.all(nodes.map(async n => await agentStatus(n.agent.url)))
        return statuses.every(s => s.peers.length === N - 1)
      }, { timeoutMs: 20_000, what: `${N} agents connected to each other` })
    } catch (err) {
      await teardown()
      throw err
    }
  }, 90_000)

  async function teardown (): Promise<void> {
    await Promise.all(nodes.map(async n => await n.agent.kill('SIGKILL')))
    await net.destroy()
    if (root !== '') await rm(root, { recursive: true, force: true })
  }

  afterAll(teardown, 30_000)

  /** Every agent's state root and image list, once they are all equal; the time it took. */
  async function converged (what: string): Promise<{ ms: number, images: Image[] }> {
    const t0 = performance.now()
    const images = await waitFor(async () => {
      const [statuses, lists] = await Promise.all([
        Promise.all(nodes.map(async n => await agentStatus(n.agent.url))),
        Promise.all(nodes.map(async n => (await n.api.list()).sort((x, y) => x.id.localeCompare(y.id))))
      ])
      for (const s of statuses) expect(s.stateRoot).toBe(statuses[0].stateRoot)
      for (const list of lists) expect(list).toEqual(lists[0])
      return lists[0]
    }, { timeoutMs: HEAL_CONVERGE_MS, intervalMs: 100, what })
    return { ms: performance.now() - t0, images }
  }

  it('every round ends with identical state on every agent within seconds of the heal', async () => {
    const random = prng(SEED)
    const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]
    let made = 0
    const outcomes: Record<string, number> = {}

    /** A JSON-patch request's status. */
    async function patch (api: Glance, id: string, ops: unknown[]): Promise<number> {
      const res = await fetch(new URL(`/v2/images/${id}`, api.url), {
        method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' }, body: JSON.stringify(ops)
      })
      await res.arrayBuffer()
      return res.status
    }

    /** One random write on agent i, to an image that agent lists (or a new one). */
    async function write (i: number): Promise<void> {
      const api = nodes[i].api
      const listed = (await api.list()).sort((x, y) => x.id.localeCompare(y.id))
      const op = listed.length < 3 ? 'create' : pick(['create', 'property', 'unset', 'rename', 'tag', 'untag', 'delete', 'property', 'tag', 'rename'])
      const image = listed.length > 0 ? pick(listed) : undefined
      const key = `k${Math.floor(random() * 4)}`
      const value = `v${made++}`
      let status: number
      if (op === 'create' || image == null) {
        status = (await api.request('POST', '/v2/images', { name: `n-${value}`, disk_format: 'raw', container_format: 'bare', [key]: value })).status
      } else if (op === 'property') {
        status = await patch(api, image.id, [{ op: 'add', path: `/${key}`, value }])
      } else if (op === 'unset') {
        const present = Object.keys(image).find(k => /^k\d$/.test(k))
        status = present == null ? 0 : await patch(api, image.id, [{ op: 'remove', path: `/${present}` }])
      } else if (op === 'rename') {
        status = await patch(api, image.id, [{ op: 'replace', path: '/name', value: `r-${value}` }])
      } else if (op === 'tag') {
        status = (await api.request('PUT', `/v2/images/${image.id}/tags/t${Math.floor(random() * 6)}`)).status
      } else if (op === 'untag') {
        status = image.tags.length === 0 ? 0 : (await api.request('DELETE', `/v2/images/${image.id}/tags/${pick(image.tags)}`)).status
      } else {
        status = (await api.request('DELETE', `/v2/images/${image.id}`)).status
      }
      // 404: the image was deleted on this side meanwhile; never a 5xx.
      expect(status, `${op} on agent ${i}`).toBeLessThan(500)
      outcomes[`${op} ${status}`] = (outcomes[`${op} ${status}`] ?? 0) + 1
    }

    for (let round = 1; round <= ROUNDS; round++) {
      const order = [...Array(N).keys()].sort(() => random() - 0.5)
      const cut = order.slice(0, 1 + Math.floor(random() * 2)).sort()
      const victim = pick(cut)
      const t0 = performance.now()
      await net.place(cut, 'br1')
      console.log(`round ${round}: agents ${cut.join(',')} cut off for ${CUT_MS / 1000} s; agent ${victim} SIGKILLed and restarted meanwhile`)
      const killAt = Math.floor(WRITES_PER_ROUND / 3)
      for (let w = 0; w < WRITES_PER_ROUND; w++) {
        if (w === killAt) {
          await nodes[victim].agent.kill('SIGKILL')
          await start(victim, nodes[victim].args)
        }
        const target = pick([...Array(N).keys()])
        await write(target)
        const due = t0 + (CUT_MS * (w + 1)) / WRITES_PER_ROUND
        await new Promise(resolve => setTimeout(resolve, Math.max(0, due - performance.now())))
      }
      await net.place(cut, 'br0')
      const { ms, images } = await converged(`identical state on ${N} agents after round ${round}`)
      console.log(`round ${round}: healed after ${((performance.now() - t0 - ms) / 1000).toFixed(1)} s cut; identical state (${images.length} images) on all ${N} agents ${ms.toFixed(0)} ms after the heal`)
    }
    console.log(`writes: ${JSON.stringify(outcomes)}`)
    const { images } = await converged('identical state at the end')
    expect(images.length).toBeGreaterThan(0)
  }, 120_000)
})
