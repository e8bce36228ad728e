import { parseArgs } from 'node:util'
import { ApiClient } from './api-client.ts'
import { CommandError, DEFAULT_URL } from './io.ts'
import type { CommandIo } from './io.ts'
import { formatBytes } from './progress.ts'

export const STATUS_USAGE = `Usage: peerglance status [--url URL] [--json]

Shows the local agent: its peer id and addresses, the peers it is connected to, and each image with
the share of its chunks this agent holds.

Options:
  --url URL   the agent's API (default: ${DEFAULT_URL}; or OS_IMAGE_URL)
  --json      print the status document as the agent sends it
  -h, --help  show this help`

interface Status {
  peerId: string | null
  multiaddrs: string[]
  peers: string[]
  images: Array<{ id: string, name: string | null, status: string, size: number | null, localShare: number | null }>
}

export async function statusCommand (argv: string[], io: CommandIo): Promise<number> {
  let values
  try {
    values = parseArgs({ args: argv, options: { url: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }).values
  } catch (err) {
    throw new CommandError(`${(err as Error).message}\n\n${STATUS_USAGE}`, 2)
  }
  if (values.help === true) { io.stdout.write(`${STATUS_USAGE}\n`); return 0 }
  const client = new ApiClient({ url: values.url ?? io.env.OS_IMAGE_URL ?? DEFAULT_URL, token: io.env.OS_AUTH_TOKEN })
  const status = await client.json<Status>('GET', '/peerglance/v1/status')
  if (values.json === true) {
    io.stdout.write(`${JSON.stringify(status, null, 2)}\n`)
    return 0
  }
  const lines = [
    `agent   ${client.url}`,
    `peer id ${status.peerId ?? '(no mesh)'}`,
    ...status.multiaddrs.map(a => `        ${a}`),
    `peers   ${status.peers.length}`,
    ...status.peers.map(p => `        ${p}`),
    `images  ${status.images.length}`
  ]
  if (status.images.length > 0) {
    const rows = status.images.map(i => [i.id, i.status, i.size == null ? '-' : formatBytes(i.size), i.localShare == null ? '-' : `${Math.round(i.localShare * 100)} %`, i.name ?? ''])
    const head = ['ID', 'STATUS', 'SIZE', 'HERE', 'NAME']
    const widths = head.map((h, c) => Math.max(h.length, ...rows.map(r => r[c]!.length)))
    for (const row of [head, ...rows]) lines.push(`  ${row.map((cell, c) => c === row.length - 1 ? cell : cell.padEnd(widths[c]!)).join('  ')}`)
  }
  io.stdout.write(`${lines.join('\n')}\n`)
  return 0
}
