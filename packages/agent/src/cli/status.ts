import { parseArgs } from 'node:util'
import { ApiClient } from './api-client.ts'
import { CommandError, DEFAULT_URL } from './io.ts'
import type { CommandIo } from './io.ts'
import { formatBytes } from './progress.ts'

export const STATUS_USAGE = `Usage: peerglance status [--url URL] [--json]

Shows the local agent: its peer id and addresses, the peers it is connected to, its cache use, the
images it is fetching now, and each image with the share of its chunks held on this agent and on
each connected peer (as the peers report it).

Options:
  --url URL   the agent's API (default: ${DEFAULT_URL}; or OS_IMAGE_URL)
  --json      print the status document as the agent sends it
  -h, --help  show this help`

interface Status {
  peerId: string | null
  multiaddrs: string[]
  peers: string[]
  cache?: { usedBytes: number, maxBytes: number, freeBytes: number, evictions: number }
  transfers?: Array<{ imageId: string, held: number, chunks: number }>
  upstream?: { upstream: string, lastRefresh: string | null, lastError: string | null } | null
  images: Array<{ id: string, name: string | null, status: string, size: number | null, localShare: number | null, pinned?: boolean }>
}

interface Coverage { agents: Array<{ peer: string | null, self?: boolean, images?: Record<string, number>, error?: string }> }

export async function statusCommand (argv: string[], io: CommandIo): Promise<number> {
  let values
  try {
    values = parseArgs({ args: argv, options: { url: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }).values
  } catch (err) {
    throw new CommandError(`${(err as Error).message}\n\n${STATUS_USAGE}`, 2)
  }
  if (values.help === true) { io.stdout.write(`${STATUS_USAGE}\n`); return 0 }
  const client = new ApiClient({ url: values.url ?? io.env.OS_IMAGE_URL ?? DEFAULT_URL, token: io.env.OS_AUTH_TOKEN })
  const [status, coverage] = await Promise.all([
    client.json<Status>('GET', '/peerglance/v1/status'),
    client.json<Coverage>('GET', '/peerglance/v1/coverage')
  ])
  if (values.json === true) {
    io.stdout.write(`${JSON.stringify({ ...status, coverage: coverage.agents }, null, 2)}\n`)
    return 0
  }
  const peers = coverage.agents.filter(a => a.self !== true)
  const lines = [
    `agent   ${client.url}`,
    `peer id ${status.peerId ?? '(no mesh)'}`,
    ...status.multiaddrs.map(a => `        ${a}`),
    `peers   ${status.peers.length}`,
    ...peers.map((p, n) => `        P${n + 1} ${p.peer ?? ''}${p.error != null ? ` (did not answer: ${p.error})` : ''}`),
    ...status.cache == null ? [] : [`cache   ${formatBytes(status.cache.usedBytes)} of ${formatBytes(status.cache.maxBytes)}, ${formatBytes(status.cache.freeBytes)} free on disk, ${status.cache.evictions} evictions`],
    ...status.upstream == null ? [] : [`upstream ${status.upstream.upstream}, list last read ${status.upstream.lastRefresh ?? 'never'}${status.upstream.lastError == null ? '' : ` (last poll here failed: ${status.upstream.lastError})`}`],
    ...(status.transfers ?? []).map(t => `fetching ${t.imageId}: ${t.held} of ${t.chunks} chunks`),
    `images  ${status.images.length}`
  ]
  const share = (v: number | null | undefined): string => v == null ? '-' : `${Math.floor(v * 100)} %`
  if (status.images.length > 0) {
    const rows = status.images.map(i => [
      i.id, i.pinned === true ? `${i.status}, pinned` : i.status, i.size == null ? '-' : formatBytes(i.size), share(i.localShare),
      ...peers.map(p => p.images == null ? '?' : share(p.images[i.id] ?? (i.size == null ? null : 0))),
      i.name ?? ''
    ])
    const head = ['ID', 'STATUS', 'SIZE', 'HERE', ...peers.map((_, n) => `P${n + 1}`), 'NAME']
    const widths = head.map((h, c) => Math.max(h.length, ...rows.map(r => r[c]!.length)))
    for (const row of [head, ...rows]) lines.push(`  ${row.map((cell, c) => c === row.length - 1 ? cell : cell.padEnd(widths[c]!)).join('  ')}`)
  }
  io.stdout.write(`${lines.join('\n')}\n`)
  return 0
}
