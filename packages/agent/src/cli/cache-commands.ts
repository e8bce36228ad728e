import { parseArgs } from 'node:util'
import { ApiClient } from './api-client.ts'
import { CommandError, DEFAULT_URL } from './io.ts'
import type { CommandIo } from './io.ts'
import { formatBytes } from './progress.ts'

const COMMON = `  --url URL   the agent's API (default: ${DEFAULT_URL}; or OS_IMAGE_URL)
  --json      print the result as JSON
  -h, --help  show this help`

export const PREFETCH_USAGE = `Usage: peerglance prefetch IMAGE_ID [--agents all|PEER_ID[,PEER_ID…]]... [--timeout SECONDS] [--url URL] [--json]

Has the agent fetch the whole image through the mesh now (Glance's cache-queue would wait for the
prefetcher's next pass), and shows its progress until every chunk is here. With --agents, orders those agents instead (this one too when
named, or with 'all'), and shows each one's progress until all of them hold the whole image.
With 'all' the order reaches every agent; the progress shown is that of this agent and its
connected peers.

Options:
  --agents all|IDS   the agents that fetch it: 'all', or peer ids (repeatable, or comma-separated)
  --timeout SECONDS  give up waiting after this long (default 3600); the fetch goes on
${COMMON}`

export const PIN_USAGE = `Usage: peerglance pin|unpin IMAGE_ID [--url URL]

A pinned image is never evicted from this agent's cache.

Options:
${COMMON}`

export const EVICT_USAGE = `Usage: peerglance evict IMAGE_ID [--url URL] [--json]

Drops the image from this agent's cache (Glance's cache-delete). Its bytes stay when they are
among the mesh's last copies (cache.minReplicas) or pinned.

Options:
${COMMON}`

interface Parsed { id: string, client: ApiClient, json: boolean, timeoutMs: number, agents?: 'all' | string[] }

function parse (argv: string[], io: CommandIo, usage: string): Parsed | undefined {
  let parsed
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { url: { type: 'string' }, json: { type: 'boolean' }, timeout: { type: 'string' }, agents: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } } })
  } catch (err) {
    throw new CommandError(`${(err as Error).message}\n\n${usage}`, 2)
  }
  const { values, positionals } = parsed
  if (values.help === true) { io.stdout.write(`${usage}\n`); return undefined }
  if (positionals.length !== 1) throw new CommandError(`expected one IMAGE_ID\n\n${usage}`, 2)
  const timeout = Number(values.timeout ?? 3600)
  if (!Number.isFinite(timeout) || timeout <= 0) throw new CommandError(`--timeout wants a number of seconds, got '${values.timeout}'`, 2)
  if (values.agents != null && usage !== PREFETCH_USAGE) throw new CommandError(`--agents is for prefetch only\n\n${usage}`, 2)
  const named = values.agents?.flatMap(a => a.split(',')).map(a => a.trim()).filter(a => a !== '')
  if (named != null && named.length === 0) throw new CommandError(`--agents wants 'all' or peer ids\n\n${usage}`, 2)
  if (named?.includes('all') === true && named.length > 1) throw new CommandError(`--agents: 'all' stands alone\n\n${usage}`, 2)
  return {
    agents: named?.[0] === 'all' ? 'all' : named,
    id: positionals[0]!,
    client: new ApiClient({ url: values.url ?? io.env.OS_IMAGE_URL ?? DEFAULT_URL, token: io.env.OS_AUTH_TOKEN }),
    json: values.json === true,
    timeoutMs: timeout * 1000
  }
}

interface StatusImage { id: string, size: number | null, localShare: number | null, pinned?: boolean }

async function imageStatus (client: ApiClient, id: string): Promise<StatusImage> {
  const status = await client.json<{ images: StatusImage[] }>('GET', '/peerglance/v1/status')
  const image = status.images.find(i => i.id === id)
  if (image == null) throw new CommandError(`image ${id} is not on this agent's list`)
  return image
}

export async function prefetchCommand (argv: string[], io: CommandIo): Promise<number> {
  const p = parse(argv, io, PREFETCH_USAGE)
  if (p == null) return 0
  if (p.agents != null) return await prefetchOn(p, p.agents, io)
  await p.client.json('POST', '/peerglance/v1/prefetch', { image_id: p.id })
  const started = Date.now()
  const tty = io.stderr.isTTY === true
  let image = await imageStatus(p.client, p.id)
  while ((image.localShare ?? 0) < 1) {
    if (Date.now() - started > p.timeoutMs) throw new CommandError(`image ${p.id}: ${Math.round((image.localShare ?? 0) * 100)} % here after ${p.timeoutMs / 1000} s; the agent keeps fetching`)
    if (tty) io.stderr.write(`\r${p.id} ${Math.round((image.localShare ?? 0) * 100)} % of ${formatBytes(image.size ?? 0)} `)
    await new Promise(resolve => setTimeout(resolve, 500))
    image = await imageStatus(p.client, p.id)
  }
  if (tty) io.stderr.write('\n')
  const seconds = (Date.now() - started) / 1000
  io.stdout.write(p.json ? `${JSON.stringify({ id: p.id, size: image.size, localShare: 1, seconds })}\n` : `image ${p.id}: all ${formatBytes(image.size ?? 0)} here (${seconds.toFixed(1)} s)\n`)
  return 0
}

interface Coverage { agents: Array<{ peer: string | null, self?: boolean, images?: Record<string, number>, error?: string }> }

/** `prefetch --agents`: order the agents, then follow each one's share until all hold it whole. */
async function prefetchOn (p: Parsed, agents: 'all' | string[], io: CommandIo): Promise<number> {
  await p.client.json('POST', '/peerglance/v1/prefetch', { image_id: p.id, agents })
  const started = Date.now()
  const tty = io.stderr.isTTY === true
  const query = agents === 'all' ? '' : `?agents=${agents.map(encodeURIComponent).join(',')}`
  for (;;) {
    const { agents: rows } = await p.client.json<Coverage>('GET', `/peerglance/v1/coverage${query}`)
    const shares = new Map<string, number | undefined>()
    for (const row of rows) {
      const peer = row.peer ?? 'this agent'
      if (agents !== 'all' && !agents.includes(peer)) continue
      shares.set(peer, row.error == null ? row.images?.[p.id] ?? 0 : undefined)
    }
    if (agents !== 'all') for (const peer of agents) if (!shares.has(peer)) shares.set(peer, undefined)
    const done = [...shares.values()].filter(s => s === 1).length
    if (done === shares.size) {
      if (tty) io.stderr.write('\n')
      const seconds = (Date.now() - started) / 1000
      io.stdout.write(p.json
        ? `${JSON.stringify({ id: p.id, agents: Object.fromEntries(shares), seconds })}\n`
        : `image ${p.id}: whole on ${done} agent${done === 1 ? '' : 's'} (${seconds.toFixed(1)} s)\n`)
      return 0
    }
    if (Date.now() - started > p.timeoutMs) {
      const behind = [...shares].filter(([, s]) => s !== 1).map(([peer, s]) => `${peer} ${s == null ? 'unreachable' : `${Math.round(s * 100)} %`}`)
      throw new CommandError(`image ${p.id}: not whole after ${p.timeoutMs / 1000} s on ${behind.join(', ')}; the agents keep fetching`)
    }
    if (tty) io.stderr.write(`\r${p.id} whole on ${done} of ${shares.size} agents `)
    await new Promise(resolve => setTimeout(resolve, 1000))
  }
}

export function pinCommand (pinned: boolean) {
  return async (argv: string[], io: CommandIo): Promise<number> => {
    const p = parse(argv, io, PIN_USAGE)
    if (p == null) return 0
    await p.client.request(pinned ? 'PUT' : 'DELETE', `/peerglance/v1/pins/${p.id}`)
    io.stdout.write(p.json ? `${JSON.stringify({ id: p.id, pinned })}\n` : `image ${p.id} ${pinned ? 'pinned' : 'unpinned'}\n`)
    return 0
  }
}

export async function evictCommand (argv: string[], io: CommandIo): Promise<number> {
  const p = parse(argv, io, EVICT_USAGE)
  if (p == null) return 0
  await p.client.request('DELETE', `/v2/cache/${p.id}`)
  const image = await imageStatus(p.client, p.id)
  const kept = (image.localShare ?? 0) > 0
  const why = image.pinned === true ? 'it is pinned here' : 'fewer than cache.minReplicas peers hold it whole'
  io.stdout.write(p.json
    ? `${JSON.stringify({ id: p.id, evicted: !kept, localShare: image.localShare })}\n`
    : kept ? `image ${p.id}: dropped from the cache list, bytes kept (${why})\n` : `image ${p.id}: evicted from this agent\n`)
  return 0
}
