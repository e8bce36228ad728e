import type { TSchema } from 'typebox'
import { Value } from 'typebox/value'
import type { ConfigIssue } from './errors.ts'

type SchemaNode = Record<string, unknown>
type TypeboxError = ReturnType<typeof Value.Errors>[number]

/**
 * Every way `value` fails `schema`, one issue per offending option, worded for an operator.
 * TypeBox reports a failed union once per branch plus once for the union, and an unknown key
 * twice; those collapse to one issue per path. A schema may carry `errorMessage` (the
 * ajv-errors keyword) to replace the generic wording, e.g. "must match HOST:PORT".
 */
export function collectIssues (schema: TSchema, value: unknown): ConfigIssue[] {
  const byPath = new Map<string, { segments: string[], errors: TypeboxError[] }>()
  const issues: ConfigIssue[] = []
  for (const error of Value.Errors(schema, value)) {
    const segments = pointerSegments(error.instancePath)
    if (error.keyword === 'additionalProperties') {
      const known = Object.keys((schemaAt(schema, segments)?.properties ?? {}) as object)
      for (const key of (error.params as { additionalProperties: string[] }).additionalProperties) {
        issues.push({ path: dotted([...segments, key]), message: `unknown option${suggest(key, known)}` })
      }
      continue
    }
    // The same unknown key again, as "schema is false" for the additionalProperties subschema.
    if (error.keyword === 'boolean' && error.schemaPath.endsWith('/additionalProperties')) continue
    const entry = byPath.get(error.instancePath) ?? { segments, errors: [] }
    entry.errors.push(error)
    byPath.set(error.instancePath, entry)
  }
  for (const { segments, errors } of byPath.values()) {
    issues.push({ path: dotted(segments), message: `${describe(schemaAt(schema, segments), errors)} (got ${show(valueAt(value, segments))})` })
  }
  return issues
}

function describe (node: SchemaNode | undefined, errors: TypeboxError[]): string {
  // A refinement only speaks when the plain schema was satisfied, so its text is the precise one.
  if (errors.every(e => e.keyword === '~refine')) return errors[0].message
  if (typeof node?.errorMessage === 'string') return node.errorMessage
  const error = errors.find(e => e.keyword === 'anyOf') ?? errors[0]
  const params = error.params as Record<string, unknown>
  switch (error.keyword) {
    case 'enum': return `must be one of ${(params.allowedValues as unknown[]).join(', ')}`
    case 'type': return `must be ${TYPE_WORDS[params.type as string] ?? String(params.type)}`
    case 'minimum': return `must be at least ${String(params.limit)}`
    case 'maximum': return `must be at most ${String(params.limit)}`
    case 'minLength': return params.limit === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters`
    case 'uniqueItems': return 'must not repeat an item'
    case 'anyOf': return `must be ${((node?.anyOf ?? []) as SchemaNode[]).map(n => TYPE_WORDS[n.type as string] ?? 'something else').join(' or ')}`
    default: return error.message
  }
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping of options',
  null: 'null'
}

// Operators coming from glance-api.conf write image_size_cap; point them at imageSizeCap.
function suggest (key: string, known: string[]): string {
  const norm = (s: string): string => s.replace(/[-_]/g, '').toLowerCase()
  const match = known.find(k => norm(k) === norm(key))
  return match === undefined ? '' : ` (did you mean ${match}?)`
}

function pointerSegments (pointer: string): string[] {
  if (pointer === '') return []
  return pointer.slice(1).split('/').map(s => s.replace(/~1/g, '/').replace(/~0/g, '~'))
}

/** `['glance', 'diskFormats', '2']` → `glance.diskFormats[2]`. */
export function dotted (segments: readonly string[]): string {
  let out = ''
  for (const s of segments) out += /^\d+$/.test(s) ? `[${s}]` : out === '' ? s : `.${s}`
  return out
}

function schemaAt (schema: TSchema, segments: string[]): SchemaNode | undefined {
  let node: SchemaNode | undefined = schema as SchemaNode
  for (const s of segments) {
    if (node === undefined) return undefined
    const properties = node.properties as Record<string, SchemaNode> | undefined
    node = properties !== undefined && Object.hasOwn(properties, s) ? properties[s] : node.items as SchemaNode | undefined
  }
  return node
}

function valueAt (value: unknown, segments: string[]): unknown {
  let v = value
  for (const s of segments) v = v != null && typeof v === 'object' ? (v as Record<string, unknown>)[s] : undefined
  return v
}

function show (value: unknown): string {
  const text = value === undefined ? 'nothing' : JSON.stringify(value)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}
