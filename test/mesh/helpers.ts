import { createHash } from 'node:crypto'
import { readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CHUNKS_DIR } from '@peerglance/chunk-store'
import { agentStatus, tmpDir, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { afterEach } from 'vitest'

export type Image = Record<string, any> & { id: string, status: string }

/** Who the noauth agent thinks is calling (keystonemiddleware's headers). */
export function asProject (projectId: string, roles = 'member'): Record<string, string> {
  return { 'x-project-id': projectId, 'x-roles': roles }
}

/** A small client of one agent's Glance API; every call that must succeed throws otherwise. */
export function glance (url: string, identity: Record<string, string> = {}) {
  const call = async (path: string, init: RequestInit = {}): Promise<Response> => {
    try {
      return await fetch(new URL(path, url), { ...init, headers: { ...identity, ...init.headers as Record<string, string> } })
    } catch (err) {
      throw new Error(`${init.method ?? 'GET'} ${path} on ${url}: ${(err as Error).message}`, { cause: err })
    }
  }
  const expectStatus = async (res: Response, status: number, what: string): Promise<Response> => {
    if (res.status !== status) throw new Error(`${what}: ${res.status} ${await res.text()}`)
    return res
  }
  const json = { 'content-type': 'application/json' }
  return {
    url,
    call,
    /** The image document, or undefined when the agent answers 404. */
    async find (id: string): Promise<Image | undefined> {
      const res = await call(`/v2/images/${id}`)
      if (res.status === 404) {
        await res.arrayBuffer()
        return undefined
      }
      return await (await expectStatus(res, 200, `GET /v2/images/${id}`)).json() as Image
    },
    async image (id: string): Promise<Image> {
      return await (await expectStatus(await call(`/v2/images/${id}`), 200, `GET /v2/images/${id}`)).json() as Image
    },
    async list (query = 'limit=1000'): Promise<Image[]> {
      const res = await expectStatus(await call(`/v2/images?${query}`), 200, `GET /v2/images?${query}`)
      return (await res.json() as { images: Image[] }).images
    },
    async create (body: Record<string, unknown> = {}): Promise<Image> {
      const res = await call('/v2/images', { method: 'POST', headers: json, body: JSON.stringify({ disk_format: 'raw', container_format: 'bare', ...body }) })
      return await (await expectStatus(res, 201, 'POST /v2/images')).json() as Image
    },
    async patch (id: string, ops: Array<Record<string, unknown>>): Promise<Image> {
      const res = await call(`/v2/images/${id}`, {
        method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' }, body: JSON.stringify(ops)
      })
      return await (await expectStatus(res, 200, `PATCH /v2/images/${id}`)).json() as Image
    },
    async upload (id: string, data: Uint8Array): Promise<void> {
      const res = await call(`/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data })
      await expectStatus(res, 204, `PUT /v2/images/${id}/file`)
    },
    /** Any call; the body parsed as JSON when there is one. */
    async request (method: string, path: string, body?: unknown): Promise<{ status: number, body: any }> {
      const res = await call(path, body === undefined ? { method } : { method, headers: json, body: JSON.stringify(body) })
      const text = await res.text()
      let parsed: unknown = text
      try { parsed = text === '' ? undefined : JSON.parse(text) } catch {}
      return { status: res.status, body: parsed }
    }
  }
}

export type Glance = ReturnType<typeof glance>

export function sha512 (bytes: Uint8Array): string {
  return createHash('sha512').update(bytes).digest('hex')
}

export function md5 (bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('hex')
}

export interface Download {
  status: number
  headers: Headers
  bytes: number
  sha512: string
  md5: string
  /** The body's first bytes (up to 64 KiB), to look at an error message. */
  head: Buffer
  /** Set when the body ended with a network error instead of its end. */
  error?: Error
}

/**
 * GET <path>, hashing the body as it streams (never holding it whole). `onBytes` is called after
 * each piece with the bytes received so far and may pause the download by returning a promise.
 */
export async function download (url: string, path: string, opts: { headers?: Record<string, string>, onBytes?: (received: number) => void | Promise<void> } = {}): Promise<Download> {
  let res: Response
  try {
    res = await fetch(new URL(path, url), { headers: opts.headers })
  } catch (err) {
    throw new Error(`GET ${path} on ${url}: ${(err as Error).message}`, { cause: err })
  }
  const s512 = createHash('sha512')
  const m5 = createHash('md5')
  const head: Buffer[] = []
  let headBytes = 0
  let bytes = 0
  let error: Error | undefined
  try {
    for await (const piece of res.body ?? []) {
      const buf = piece as Uint8Array
      s512.update(buf)
      m5.update(buf)
      if (headBytes < 65_536) {
        head.push(Buffer.from(buf.subarray(0, 65_536 - headBytes)))
        headBytes += Math.min(buf.byteLength, 65_536 - headBytes)
      }
      bytes += buf.byteLength
      await opts.onBytes?.(bytes)
    }
  } catch (err) {
    error = err as Error
  }
  return { status: res.status, headers: res.headers, bytes, sha512: s512.digest('hex'), md5: m5.digest('hex'), head: Buffer.concat(head), error }
}

/** Every chunk file of an agent as [cid, path]: <dataDir>/chunks/chunks/<fan-out>/<cid>. */
export async function chunkFiles (dataDir: string): Promise<Array<[string, string]>> {
  const root = join(dataDir, 'chunks', CHUNKS_DIR)
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter(e => e.isFile()).map(e => [e.name, join(e.parentPath, e.name)])
}

/** A Prometheus counter or gauge from `GET /metrics` (the sum over its label sets). */
export async function metric (url: string, name: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', url))).text()
  let total = 0
  let found = false
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`).exec(line)
    if (m != null) {
      total += Number(m[1])
      found = true
    }
  }
  if (!found) throw new Error(`no metric ${name} in /metrics`)
  return total
}

/** A config file for `--config`, in a fresh directory that `dirs` collects for cleanup. */
/**
 * After each test of the calling file: kill the mesh its tests started (they store it with `set`)
 * and remove the config dirs they made (`configFile(…, dirs)`).
 */
export function meshPerTest (): { set: (mesh: TestMesh) => TestMesh, dirs: string[] } {
  let current: TestMesh | undefined
  const dirs: string[] = []
  afterEach(async () => {
    await current?.close()
    current = undefined
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
  })
  return { set: mesh => (current = mesh), dirs }
}

export async function configFile (yaml: string, dirs: string[]): Promise<string> {
  const dir = await tmpDir('peerglance-config-')
  dirs.push(dir)
  const path = join(dir, 'peerglance.yaml')
  await writeFile(path, yaml)
  return path
}

/** Log lines an agent printed whose message contains `text`. */
export function logsMatching (logs: Array<Record<string, unknown>>, text: string | RegExp): Array<Record<string, unknown>> {
  return logs.filter(l => typeof l.msg === 'string' && (typeof text === 'string' ? l.msg.includes(text) : text.test(l.msg)))
}

/** Creates and uploads an image on `api`, then waits until every one of `others` shows it active. */
export async function seedImage (api: Glance, others: Glance[], data: Uint8Array, name = 'seeded'): Promise<string> {
  const { id } = await api.create({ name })
  await api.upload(id, data)
  await waitFor(async () => {
    for (const other of others) if ((await other.find(id))?.status !== 'active') return false
    return true
  }, { what: `image ${id} active on every agent` })
  return id
}

/** The share of the image's chunks the agent holds (0 until it has fetched the manifest; null for an image with no data). */
export async function localShare (url: string, id: string): Promise<number | null | undefined> {
  return (await agentStatus(url)).images.find(i => i.id === id)?.localShare
}
