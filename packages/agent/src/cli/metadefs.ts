import { readFile, readdir, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { parseArgs } from 'node:util'
import { ApiClient } from './api-client.ts'
import { CommandError, DEFAULT_URL } from './io.ts'
import type { CommandIo } from './io.ts'

export const METADEFS_USAGE = `Usage: peerglance metadefs load DIR|FILE [--url URL] [--json]

Loads Glance's metadata definition files (the JSON files glance-manage db_load_metadefs reads;
Debian's glance-common ships them in /etc/glance/metadefs) into the mesh through the local agent:
each file becomes a namespace with its objects, properties, tags and resource type associations.
A namespace that exists already is left as it is. Needs an admin (OS_AUTH_TOKEN with Keystone).

Options:
  --url URL   the agent's API (default: ${DEFAULT_URL}; or OS_IMAGE_URL)
  --json      print one result per file as JSON
  -h, --help  show this help`

type Json = Record<string, any>

interface Outcome { file: string, namespace?: string, outcome: 'loaded' | 'exists' | 'failed', detail?: string }

export async function metadefsCommand (argv: string[], io: CommandIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { url: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } })
  } catch (err) {
    throw new CommandError(`${(err as Error).message}\n\n${METADEFS_USAGE}`, 2)
  }
  const { values, positionals } = parsed
  if (values.help === true) { io.stdout.write(`${METADEFS_USAGE}\n`); return 0 }
  if (positionals[0] !== 'load' || positionals.length !== 2) throw new CommandError(`expected: load DIR|FILE\n\n${METADEFS_USAGE}`, 2)
  const client = new ApiClient({ url: values.url ?? io.env.OS_IMAGE_URL ?? DEFAULT_URL, token: io.env.OS_AUTH_TOKEN })
  const files = await definitionFiles(positionals[1]!)
  const outcomes: Outcome[] = []
  for (const file of files) {
    const outcome = await loadFile(client, file)
    outcomes.push(outcome)
    if (values.json !== true) io.stdout.write(`${describe(outcome)}\n`)
  }
  if (values.json === true) io.stdout.write(`${JSON.stringify(outcomes, null, 2)}\n`)
  const failed = outcomes.filter(o => o.outcome === 'failed').length
  if (values.json !== true) io.stdout.write(`${outcomes.length - failed} of ${outcomes.length} files loaded or present${failed > 0 ? `, ${failed} failed` : ''}\n`)
  return failed > 0 ? 1 : 0
}

/** The `.json` files of a directory (not its subdirectories), in name order, or the one file given. */
async function definitionFiles (path: string): Promise<string[]> {
  let info
  try {
    info = await stat(path)
  } catch (err) {
    throw new CommandError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  if (!info.isDirectory()) return [path]
  const entries = await readdir(path, { withFileTypes: true })
  const files = entries.filter(e => e.isFile() && e.name.endsWith('.json')).map(e => join(path, e.name)).sort()
  if (files.length === 0) throw new CommandError(`no .json files in ${path}`)
  return files
}

async function loadFile (client: ApiClient, file: string): Promise<Outcome> {
  let metadata: Json
  try {
    metadata = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    return { file, outcome: 'failed', detail: `not a JSON file: ${(err as Error).message}` }
  }
  if (metadata == null || typeof metadata !== 'object' || typeof metadata.namespace !== 'string') {
    return { file, outcome: 'failed', detail: 'no "namespace" in it' }
  }
  const namespace = metadata.namespace as string
  const res = await client.request('POST', '/v2/metadefs/namespaces', {
    body: JSON.stringify(namespaceBody(metadata)),
    headers: { 'content-type': 'application/json', accept: 'application/json' }
  }, [400, 403, 409])
  if (res.status === 409) return { file, namespace, outcome: 'exists' }
  if (!res.ok) return { file, namespace, outcome: 'failed', detail: `${res.status} ${await messageOf(res)}` }
  return { file, namespace, outcome: 'loaded' }
}

/**
 * The create body for one file, as glance-manage reads it: the namespace's attributes (owner
 * `admin` when the file names none), and its contents, created with it in one request.
 */
function namespaceBody (metadata: Json): Json {
  const defined = (entries: Json): Json => Object.fromEntries(Object.entries(entries).filter(([, v]) => v != null))
  return defined({
    namespace: metadata.namespace,
    display_name: metadata.display_name,
    description: metadata.description,
    visibility: metadata.visibility,
    protected: metadata.protected,
    owner: metadata.owner ?? 'admin',
    resource_type_associations: (metadata.resource_type_associations as Json[] | undefined)?.map(a => defined({ name: a.name, prefix: a.prefix, properties_target: a.properties_target })),
    properties: metadata.properties,
    objects: (metadata.objects as Json[] | undefined)?.map(o => defined({ name: o.name, description: o.description, required: o.required, properties: o.properties })),
    tags: (metadata.tags as Json[] | undefined)?.map(t => ({ name: t.name }))
  })
}

async function messageOf (res: Response): Promise<string> {
  const text = await res.text()
  try {
    return (JSON.parse(text) as { message?: string }).message?.replace(/<br \/>[\s\S]*$/, '') ?? text
  } catch {
    return text.trim()
  }
}

function describe (o: Outcome): string {
  const name = basename(o.file)
  if (o.outcome === 'loaded') return `loaded  ${o.namespace!} (${name})`
  if (o.outcome === 'exists') return `exists  ${o.namespace!} (${name}), left as it is`
  return `failed  ${name}: ${o.detail ?? ''}`
}
