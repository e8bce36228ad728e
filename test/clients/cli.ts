import { execFile } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export interface Cli {
  /** Runs the client with these arguments; never throws for a non-zero exit. */
  run: (args: readonly string[], opts?: { timeoutMs?: number }) => Promise<CliResult>
  /** Runs the client and returns its stdout; throws with the client's stderr if it failed. */
  ok: (args: readonly string[], opts?: { timeoutMs?: number }) => Promise<string>
}

const DEFAULT_TIMEOUT_MS = 180_000

/**
 * How the client gets its standard input. Both Debian CLIs upload a non-terminal stdin as image
 * data (glance-api.md §26): an empty one (`</dev/null`, or the ended pipe 'null' gives) turns
 * `image-create` without `--file` into an active 0-byte image. A closed stdin is what glanceclient
 * treats as "no data" (`glance ... <&-`, its cron case), but openstackclient 6.0 crashes on it
 * (`sys.stdin` is None), so openstack gets an empty stdin and tests always give it `--file` when
 * creating.
 */
type Stdin = 'null' | 'closed'

function cli (command: string, env: Record<string, string>, stdin: Stdin): Cli {
  const run = async (args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> => {
    const [file, argv] = stdin === 'closed'
      ? ['/bin/sh', ['-c', 'exec "$@" <&-', 'sh', command, ...args]]
      : [command, [...args]]
    return await new Promise<CliResult>((resolve, reject) => {
      const child = execFile(file, argv, {
        env,
        timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8'
      }, (err, stdout, stderr) => {
        if (err == null) return resolve({ code: 0, stdout, stderr })
        const code = (err as { code?: unknown }).code
        if (typeof code === 'number') return resolve({ code, stdout, stderr })
        reject(new Error(`${command} ${args.join(' ')}: ${err.killed === true ? 'timed out' : err.message}\n${stderr}`))
      })
      // execFile hands the child a pipe; ending it at once makes it an empty, non-terminal stdin.
      child.stdin?.end()
    })
  }
  const ok = async (args: readonly string[], opts?: { timeoutMs?: number }): Promise<string> => {
    const result = await run(args, opts)
    if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.code}:\n${result.stderr}${result.stdout}`)
    return result.stdout
  }
  return { run, ok }
}

/** Nothing from the test runner's environment leaks in: no OS_CLOUD, no proxies, no real HOME. */
function baseEnv (home: string): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, LANG: 'C.UTF-8' }
}

/** `openstack` (python3-openstackclient) without Keystone: the SDK discovers the API on the agent URL. */
export function openstackCli (url: string, home: string): Cli {
  return cli('openstack', { ...baseEnv(home), OS_AUTH_TYPE: 'none', OS_ENDPOINT: url, OS_IMAGE_API_VERSION: '2' }, 'null')
}

/** `openstack` with password auth against Keystone: `auth` holds the OS_* variables (OS_AUTH_URL, OS_USERNAME, ...). */
export function openstackKeystoneCli (auth: Record<string, string>, home: string): Cli {
  return cli('openstack', { ...baseEnv(home), OS_IDENTITY_API_VERSION: '3', OS_IMAGE_API_VERSION: '2', ...auth }, 'null')
}

/** `glance` (python3-glanceclient) with a token (by default one the agent never checks); HOME holds its schema cache. */
export function glanceCli (url: string, home: string, token = 'peerglance-test-token'): Cli {
  return cli('glance', { ...baseEnv(home), OS_IMAGE_URL: url, OS_AUTH_TOKEN: token }, 'closed')
}

/** A value from the two-column `| Property | Value |` table glance prints; only for short values. */
export function tableValue (table: string, property: string): string {
  const match = new RegExp(`^\\|\\s*${property}\\s*\\|\\s*(.*?)\\s*\\|$`, 'm').exec(table)
  if (match == null) throw new Error(`no ${property} in:\n${table}`)
  return match[1]
}

/** Every image id in a client's output, in order of appearance. */
export function idsIn (output: string): string[] {
  return output.match(/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/g) ?? []
}

/**
 * Paths of the image-list requests a client made, from its `--debug` log (urllib3 logs each one
 * as `"GET /v2/images?... HTTP/1.1" 200`); both clients print some lines twice, hence the Set.
 */
export function listRequests (debugLog: string): string[] {
  return [...new Set(debugLog.match(/"GET \/v2\/images(?:\?[^" ]*)? HTTP\/1\.1" \d+/g) ?? [])]
}

/** Who the noauth agent thinks is calling: keystonemiddleware's headers. */
export function asProject (projectId: string, roles = 'member'): Record<string, string> {
  return { 'x-project-id': projectId, 'x-roles': roles }
}

export type Image = Record<string, any> & { id: string, status: string }

/** A small client of the agent's API, to look at what the CLIs did without reading their tables. */
export function glanceApi (url: string): {
  fetch: (path: string, init?: RequestInit) => Promise<Response>
  image: (id: string, headers?: Record<string, string>) => Promise<Image>
  create: (body: Record<string, unknown>, headers?: Record<string, string>) => Promise<Image>
  upload: (id: string, data: Uint8Array, headers?: Record<string, string>) => Promise<void>
  waitForStatus: (id: string, status: string, timeoutMs?: number) => Promise<Image>
} {
  const call = async (path: string, init: RequestInit = {}): Promise<Response> => await fetch(new URL(path, url), init)
  const image = async (id: string, headers: Record<string, string> = {}): Promise<Image> => {
    const res = await call(`/v2/images/${id}`, { headers: { accept: 'application/json', ...headers } })
    if (res.status !== 200) throw new Error(`GET /v2/images/${id}: ${res.status} ${await res.text()}`)
    return await res.json() as Image
  }
  return {
    fetch: call,
    image,
    create: async (body, headers = {}) => {
      const res = await call('/v2/images', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
      if (res.status !== 201) throw new Error(`POST /v2/images: ${res.status} ${await res.text()}`)
      return await res.json() as Image
    },
    upload: async (id, data, headers = {}) => {
      const res = await call(`/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', ...headers }, body: data })
      if (res.status !== 204) throw new Error(`PUT /v2/images/${id}/file: ${res.status} ${await res.text()}`)
    },
    // Imports finish in the background after the 202, so the CLIs return before the image is active.
    waitForStatus: async (id, status, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const current = await image(id)
        if (current.status === status) return current
        if (Date.now() > deadline) throw new Error(`image ${id} is ${current.status}, not ${status}, after ${timeoutMs} ms`)
        await sleep(100)
      }
    }
  }
}
