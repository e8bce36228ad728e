import { readFileSync } from 'node:fs'
import { Value } from 'typebox/value'
import { parseDocument } from 'yaml'
import { ConfigError, type ConfigIssue } from './errors.ts'
import { collectIssues } from './issues.ts'
import { AgentConfig } from './schema/agent.ts'
import { authIssues } from './schema/auth.ts'
import { upstreamIssues } from './schema/upstream.ts'

/** What a caller may override: any subset of the options, nested as in AgentConfig. */
export type ConfigOverrides = DeepPartial<AgentConfig>

// Arrays stay whole because overrides replace them instead of merging into them.
export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T

export interface LoadConfigOptions {
  /** A YAML file to read; options it leaves out keep their defaults. */
  file?: string
  /** Values that win over the file, typically from command-line flags. */
  overrides?: ConfigOverrides
  /** Reserved for PEERGLANCE_* variables; not read yet, so components never see env by accident. */
  env?: Record<string, string | undefined>
}

/**
 * The agent's configuration: embedded defaults, then the YAML file, then overrides. Objects merge
 * key by key and anything else (arrays too) replaces. The result is validated as a whole and
 * deeply frozen, because every component shares it.
 * @throws ConfigError naming the file when it cannot be read or parsed, and every bad option by
 *   its dotted path, e.g. `invalid config: api.listen: must match HOST:PORT ... (got "nope")`.
 */
export function loadConfig (options: LoadConfigOptions = {}): AgentConfig {
  let merged: unknown = structuredClone(Value.Default(AgentConfig, {}))
  if (options.file !== undefined) merged = deepMerge(merged, readConfigFile(options.file))
  if (options.overrides !== undefined) merged = deepMerge(merged, options.overrides)
  // Merging onto the defaults already filled every option; this pass only repeats what the
  // schema says, so the schema stays the one place that decides defaults.
  const config = Value.Default(AgentConfig, merged)
  const issues = collectIssues(AgentConfig, config)
  if (issues.length === 0) issues.push(...crossIssues(config as AgentConfig))
  if (issues.length > 0) {
    const where = options.file === undefined ? '' : ` (file ${options.file})`
    throw new ConfigError(`invalid config${where}: ${issues.map(i => `${i.path}: ${i.message}`).join('; ')}`, { issues, file: options.file })
  }
  const loaded = structuredClone(config as AgentConfig)
  // The policy file's rules come first; rules written in the config win over them.
  if (loaded.policy.file != null) loaded.policy.rules = { ...readPolicyFile(loaded.policy.file), ...loaded.policy.rules }
  return deepFreeze(loaded)
}

/** An oslo.policy file: a YAML (or JSON) mapping of rule names to check strings. */
function readPolicyFile (file: string): Record<string, string> {
  const value = parseYamlFile(file, 'policy file')
  if (value == null) return {}
  const entries = typeof value === 'object' && !Array.isArray(value) ? Object.entries(value) : undefined
  const bad = entries?.find(([, rule]) => typeof rule !== 'string')
  if (entries == null || bad != null) {
    const why = bad == null ? 'the top level must be a mapping of rule names to check strings' : `rule "${bad[0]}" must be a check string`
    throw new ConfigError(`invalid policy file ${file}: ${why}`, { file })
  }
  return Object.fromEntries(entries) as Record<string, string>
}

/** Options that depend on each other, checked once each is valid on its own. */
function crossIssues (config: AgentConfig): ConfigIssue[] {
  const issues = [...authIssues(config.auth, config.api.listen), ...upstreamIssues(config.upstream, config.auth.keystone.url)]
  if ((config.api.tls.cert == null) !== (config.api.tls.key == null)) {
    issues.push({ path: 'api.tls', message: 'needs both cert and key, or neither' })
  }
  return issues
}

let defaults: AgentConfig | undefined

/** The embedded defaults, validated and frozen; config/peerglance.yaml spells out the same values. */
export function defaultConfig (): AgentConfig {
  defaults ??= loadConfig()
  return defaults
}

function parseYamlFile (file: string, what: string): unknown {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message
    throw new ConfigError(`cannot read ${what} ${file}: ${why}`, { file, cause: err })
  }
  const doc = parseDocument(text, { prettyErrors: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(`cannot parse ${what} ${file}: ${doc.errors.map(e => e.message).join('; ')}`, { file, cause: doc.errors[0] })
  }
  return doc.toJS()
}

function readConfigFile (file: string): unknown {
  const value = parseYamlFile(file, 'config file')
  // An empty file, or one with only comments, means "all defaults".
  if (value == null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`invalid config file ${file}: the top level must be a mapping of options`, { file })
  }
  return value
}

function isPlainObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function deepMerge (base: unknown, patch: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(patch)) return structuredClone(patch)
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(patch)) {
    // A CLI parser leaves unset flags undefined; they must not erase what the file says.
    if (value === undefined) continue
    // defineProperty, because assigning a YAML key named __proto__ would replace the prototype
    // instead of becoming an (unknown, hence reported) option.
    Object.defineProperty(out, key, { value: deepMerge(Object.hasOwn(out, key) ? out[key] : undefined, value), enumerable: true, writable: true, configurable: true })
  }
  return out
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
