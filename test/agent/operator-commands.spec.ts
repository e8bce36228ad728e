import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, spawnAgent, tmpDir } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'

const BIN = fileURLToPath(new URL('../../packages/agent/bin/peerglance.js', import.meta.url))
let agent: SpawnedAgent
let dir: string

beforeAll(async () => {
  dir = await tmpDir()
  agent = await spawnAgent({ dataDir: join(dir, 'agent') })
})
afterAll(async () => {
  await agent?.kill('SIGKILL')
  await rm(dir, { recursive: true, force: true })
})

async function peerglance (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000, env: { ...process.env, OS_IMAGE_URL: agent.url } }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (err as { code: number }).code, stdout, stderr })
    })
  })
}

async function imageIds (): Promise<string[]> {
  const body = await (await fetch(`${agent.url}/v2/images`)).json() as { images: Array<{ id: string }> }
  return body.images.map(i => i.id)
}

describe('peerglance seed', () => {
  it('uploads a file, checks the sha512 the agent computed against its own, and prints the id', async () => {
    const bytes = randomBytes(9 * 1024 * 1024 + 123)
    const file = join(dir, 'cirros.img')
    await writeFile(file, bytes)
    const r = await peerglance('seed', file, '--name', 'cirros', '--property', 'os_distro=cirros', '--property', 'hw_disk_bus=virtio', '--json')
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { id: string, sha512: string, size: number, status: string }
    const sha512 = createHash('sha512').update(bytes).digest('hex')
    expect(out).toMatchObject({ sha512, size: bytes.length, status: 'active' })
    const image = await (await fetch(`${agent.url}/v2/images/${out.id}`)).json() as Record<string, unknown>
    expect(image).toMatchObject({ name: 'cirros', disk_format: 'raw', container_format: 'bare', os_distro: 'cirros', hw_disk_bus: 'virtio', os_hash_value: sha512 })
    const data = Buffer.from(await (await fetch(`${agent.url}/v2/images/${out.id}/file`)).arrayBuffer())
    expect(data.equals(bytes)).toBe(true)

    const text = await peerglance('seed', file, '--disk-format', 'raw')
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/^image [0-9a-f-]{36} active: cirros\.img, 9\.00 MiB\nsha512 [0-9a-f]{128}\n$/)
  })

  it('refuses bad usage with exit code 2 and stores nothing', async () => {
    const before = await imageIds()
    let r = await peerglance('seed', join(dir, 'no-such-file.qcow2'))
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('not a readable file')
    const odd = join(dir, 'disk.bin')
    await writeFile(odd, 'x')
    r = await peerglance('seed', odd)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--disk-format')
    r = await peerglance('seed', odd, '--disk-format', 'raw', '--property', 'novalue')
    expect(r.code).toBe(2)
    r = await peerglance('seed', odd, '--frobnicate')
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('frobnicate')
    expect(await imageIds()).toEqual(before)
  })

  it('reports what the agent refused, with exit code 1, and leaves no half-made image', async () => {
    const before = await imageIds()
    const file = join(dir, 'disk.qcow2')
    await writeFile(file, randomBytes(4096)) // not a qcow2: the agent's format inspection refuses it
    const r = await peerglance('seed', file)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^peerglance: PUT \/v2\/images\/[0-9a-f-]+\/file: 4\d\d /)
    expect(await imageIds()).toEqual(before)

    const bad = await peerglance('seed', file, '--disk-format', 'floppy')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain('POST /v2/images: 400')
    expect(await imageIds()).toEqual(before)
  })

  it('says when it cannot reach the agent', async () => {
    const file = join(dir, 'x.raw')
    await writeFile(file, 'x')
    const port = await freePort()
    const r = await peerglance('seed', file, '--url', `http://127.0.0.1:${port}`)
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`peerglance: cannot reach the agent at http://127.0.0.1:${port}: ECONNREFUSED\n`)
  })
})

describe('peerglance status', () => {
  it('lists the images with the share this agent holds', async () => {
    const file = join(dir, 'small.raw')
    await writeFile(file, randomBytes(1000))
    const seeded = JSON.parse((await peerglance('seed', file, '--json')).stdout) as { id: string }
    const json = await peerglance('status', '--json')
    expect(json.code).toBe(0)
    const status = JSON.parse(json.stdout) as { peerId: string, images: Array<{ id: string, localShare: number }> }
    expect(status.peerId).toMatch(/^12D3KooW/)
    expect(status.images.find(i => i.id === seeded.id)).toMatchObject({ localShare: 1 })
    const text = await peerglance('status')
    expect(text.code).toBe(0)
    expect(text.stdout).toContain(`peer id ${status.peerId}`)
    expect(text.stdout).toMatch(new RegExp(`${seeded.id}\\s+active\\s+1000 B\\s+100 %\\s+small\\.raw`))
  })
})
