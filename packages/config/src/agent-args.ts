import { parseArgs } from 'node:util'
import type { TSchema } from 'typebox'
import { ConfigError, type ConfigIssue } from './errors.ts'
import { collectIssues } from './issues.ts'
import type { ConfigOverrides } from './load-config.ts'
import { AgentConfig } from './schema/agent.ts'

export interface AgentArgs {
  /** --help was given: print AGENT_USAGE and exit 0 instead of starting. */
  help: boolean
  /** --config FILE */
  configFile?: string
  /** The options the flags set, for loadConfig({ overrides }). */
  overrides: ConfigOverrides
}

interface Flag {
  name: string
  arg: string
  /** Where the value goes in AgentConfig. */
  path: readonly string[]
  multiple: boolean
  summary: string
}

// One table drives parsing, validation and the usage text, so they cannot disagree.
const FLAGS: readonly Flag[] = [
  { name: 'data-dir', arg: 'DIR', path: ['dataDir'], multiple: false, summary: 'where image chunks and metadata are stored' },
  { name: 'api-listen', arg: 'HOST:PORT', path: ['api', 'listen'], multiple: false, summary: 'address of the Glance API, e.g. 0.0.0.0:9292 or [::]:9292' },
  { name: 'log-level', arg: 'LEVEL', path: ['log', 'level'], multiple: false, summary: 'fatal, error, warn, info, debug, trace or silent' },
  { name: 'p2p-listen', arg: 'MULTIADDR', path: ['mesh', 'listen'], multiple: true, summary: 'libp2p address for peers, e.g. /ip4/0.0.0.0/tcp/4001; repeatable' },
  { name: 'bootstrap', arg: 'MULTIADDR', path: ['mesh', 'bootstrap'], multiple: true, summary: 'peer agent to dial at start, ending in /p2p/PEER_ID; repeatable' }
]

function schemaAt (path: readonly string[]): TSchema {
  let node = AgentConfig as unknown as { properties: Record<string, unknown> }
  for (const key of path) node = node.properties[key] as typeof node
  return node as unknown as TSchema
}

function defaultText (flag: Flag): string {
  const value = (schemaAt(flag.path) as { default?: unknown }).default
  if (Array.isArray(value)) return value.length === 0 ? '' : ` (default: ${value.join(' ')})`
  return ` (default: ${String(value)})`
}

function usage (): string {
  const rows: Array<[string, string]> = [
    ['--config FILE', 'YAML config file; see config/peerglance.yaml for every option'],
    ...FLAGS.map((f): [string, string] => [`--${f.name} ${f.arg}`, `${f.summary}${defaultText(f)}`]),
    ['-h, --help', 'show this help and exit']
  ]
  const width = Math.max(...rows.map(([left]) => left.length)) + 2
  return [
    'Usage: peerglance agent [options]',
    '',
    'Runs the peerglance agent: an OpenStack Glance v2 image API on this host that shares image data with peer agents.',
    '',
    'Options:',
    ...rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`),
    '',
    'Precedence: built-in defaults < --config file < flags.',
    ''
  ].join('\n')
}

/** Help text for `peerglance agent`, listing every flag with its default. */
export const AGENT_USAGE = usage()

/**
 * Parses the arguments that follow `peerglance agent`. Flag values are checked against the
 * same schema as the file, so `--api-listen nope` fails here and names the flag.
 * @throws ConfigError naming the flag for an unknown flag, a missing value, a stray argument
 *   or a bad value.
 */
export function parseAgentArgs (argv: readonly string[]): AgentArgs {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(FLAGS.map(f => [f.name, { type: 'string' as const, multiple: f.multiple }]))
      }
    })
  } catch (err) {
    throw new ConfigError(argsErrorMessage(err as Error & { code?: string }), { cause: err })
  }
  const values = parsed.values as Record<string, string | string[] | boolean | undefined>
  const configFile = values.config as string | undefined
  if (values.help === true) return { help: true, overrides: {}, ...(configFile === undefined ? {} : { configFile }) }
  if (configFile === '') throw new ConfigError('--config: must not be empty', { issues: [{ path: '--config', message: 'must not be empty' }] })

  const overrides: Record<string, unknown> = {}
  const issues: ConfigIssue[] = []
  for (const flag of FLAGS) {
    const value = values[flag.name]
    if (value === undefined) continue
    for (const issue of collectIssues(schemaAt(flag.path), value)) {
      // For a repeatable flag the issue path is the index, which means nothing on a command line.
      issues.push({ path: `--${flag.name}`, message: issue.message })
    }
    setPath(overrides, flag.path, value)
  }
  if (issues.length > 0) {
    throw new ConfigError(`invalid arguments: ${issues.map(i => `${i.path}: ${i.message}`).join('; ')}`, { issues })
  }
  return { help: false, overrides: overrides as ConfigOverrides, ...(configFile === undefined ? {} : { configFile }) }
}

function setPath (target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target
  for (const key of path.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>
  node[path[path.length - 1]] = value
}

// node:util's messages are long and suggest `--` tricks; ours name the flag and point to --help.
function argsErrorMessage (err: Error & { code?: string }): string {
  const flag = /--[\w-]+/.exec(err.message)?.[0] ?? /'(-[^' ,]+)/.exec(err.message)?.[1] ?? '?'
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': return `unknown option ${flag}; see peerglance agent --help`
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': return err.message.includes('does not take an argument')
      ? `option ${flag} takes no value`
      : `option ${flag} needs a value`
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL': return `unexpected argument ${/'([^']*)'/.exec(err.message)?.[1] ?? ''}; peerglance agent takes only options`
    default: return err.message
  }
}
