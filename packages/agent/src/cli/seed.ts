import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename, extname } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { parseArgs } from 'node:util'
import { ApiClient } from './api-client.ts'
import { CommandError, DEFAULT_URL } from './io.ts'
import type { CommandIo } from './io.ts'
import { formatBytes, progressBar } from './progress.ts'

export const SEED_USAGE = `Usage: peerglance seed FILE [options]

Uploads FILE as a new image through the local agent; the mesh spreads it from there.

Options:
  --name NAME                image name (default: the file name)
  --disk-format FORMAT       qcow2, raw, vmdk, vdi, vhd, vhdx, iso, ... (default: from the file extension)
  --container-format FORMAT  bare, ovf, ova, ... (default: bare)
  --visibility VISIBILITY    private, shared, community or public
  --property KEY=VALUE       extra image property; repeatable
  --url URL                  the agent's Glance API (default: ${DEFAULT_URL}; or OS_IMAGE_URL)
  --json                     print the result as JSON
  -h, --help                 show this help

Prints the image id and the sha512 the agent computed, after checking it against the file's own.
With Keystone, the token comes from OS_AUTH_TOKEN.`

const FORMAT_BY_EXTENSION: Record<string, string> = {
  '.qcow2': 'qcow2', '.img': 'raw', '.raw': 'raw', '.iso': 'iso', '.vmdk': 'vmdk', '.vdi': 'vdi', '.vhd': 'vhd', '.vhdx': 'vhdx', '.ploop': 'ploop'
}

interface Seeded { id: string, name: string, status: string, size: number, sha512: string }

export async function seedCommand (argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parse(argv)
  if (values.help === true) { io.stdout.write(`${SEED_USAGE}\n`); return 0 }
  if (positionals.length !== 1) throw new CommandError(`seed takes one FILE (got ${positionals.length})\n\n${SEED_USAGE}`, 2)
  const file = positionals[0]!
  const info = await stat(file).catch(() => undefined)
  if (info?.isFile() !== true) throw new CommandError(`${file}: not a readable file`, 2)
  const diskFormat = values['disk-format'] ?? FORMAT_BY_EXTENSION[extname(file).toLowerCase()]
  if (diskFormat == null) throw new CommandError(`cannot tell the disk format of ${file} from its name: pass --disk-format`, 2)

  const client = new ApiClient({ url: values.url ?? io.env.OS_IMAGE_URL ?? DEFAULT_URL, token: io.env.OS_AUTH_TOKEN })
  const image = await client.json<{ id: string, name: string }>('POST', '/v2/images', {
    ...properties(values.property ?? []),
    name: values.name ?? basename(file),
    disk_format: diskFormat,
    container_format: values['container-format'] ?? 'bare',
    ...(values.visibility != null ? { visibility: values.visibility } : {})
  })

  const sha512 = createHash('sha512')
  const tap = new Transform({ transform (chunk: Buffer, _enc, callback) { sha512.update(chunk); callback(null, chunk) } })
  const bar = progressBar(io, info.size, basename(file))
  const body = createReadStream(file).pipe(tap).pipe(bar)
  try {
    await client.request('PUT', `/v2/images/${image.id}/file`, {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(info.size) },
      body: Readable.toWeb(body) as ReadableStream,
      duplex: 'half'
    })
  } catch (err) {
    // A half-made image helps nobody: the operator reruns the command.
    await client.request('DELETE', `/v2/images/${image.id}`).catch(() => {})
    throw err
  } finally {
    bar.done()
  }
  const local = sha512.digest('hex')
  const stored = await client.json<{ status: string, size: number, os_hash_value: string | null }>('GET', `/v2/images/${image.id}`)
  if (stored.os_hash_value !== local || stored.size !== info.size) {
    throw new CommandError(`image ${image.id}: the agent stored ${stored.size} bytes with sha512 ${stored.os_hash_value ?? 'none'}, the file has ${info.size} bytes with sha512 ${local}`)
  }
  const result: Seeded = { id: image.id, name: image.name, status: stored.status, size: stored.size, sha512: local }
  io.stdout.write(values.json === true
    ? `${JSON.stringify(result)}\n`
    : `image ${result.id} ${result.status}: ${result.name}, ${formatBytes(result.size)}\nsha512 ${result.sha512}\n`)
  return 0
}

function parse (argv: string[]): ReturnType<typeof parseSeedArgs> {
  try {
    return parseSeedArgs(argv)
  } catch (err) {
    throw new CommandError(`${(err as Error).message}\n\n${SEED_USAGE}`, 2)
  }
}

function parseSeedArgs (argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      'disk-format': { type: 'string' },
      'container-format': { type: 'string' },
      visibility: { type: 'string' },
      property: { type: 'string', multiple: true },
      url: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' }
    }
  })
}

function properties (pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new CommandError(`--property wants KEY=VALUE, got '${pair}'`, 2)
    out[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return out
}
