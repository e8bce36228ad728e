import { ValidationError } from '@peerglance/interface'

type Schema = Record<string, any>

/**
 * Checks one value against the JSON-schema keywords Glance's schemas use (the image schema and
 * the metadefs ones: types, enums, lengths, patterns, items, properties, required,
 * additionalProperties, minimum, minItems, uniqueItems, allOf and local `$ref`s), and words the
 * failure as Python's jsonschema does, because Glance passes that text to the client.
 */
export function violation (value: unknown, schema: Schema, root: Schema = schema): string | undefined {
  if (typeof schema.$ref === 'string') return violation(value, resolve(schema.$ref, root), root)
  for (const part of schema.allOf ?? []) {
    const v = violation(value, part, root)
    if (v != null) return v
  }
  const types: string[] = schema.type == null ? [] : [schema.type].flat()
  if (types.length > 0 && !types.some(t => isType(value, t))) {
    return `${repr(value)} is not of type ${types.map(t => `'${t}'`).join(', ')}`
  }
  if (schema.enum != null && !schema.enum.includes(value)) {
    return `${repr(value)} is not one of [${schema.enum.map(repr).join(', ')}]`
  }
  if (typeof value === 'string') {
    if (schema.maxLength != null && value.length > schema.maxLength) return `${repr(value)} is too long`
    if (schema.pattern != null && !new RegExp(schema.pattern).test(value)) return `${repr(value)} does not match '${schema.pattern}'`
  }
  if (typeof value === 'number' && schema.minimum != null && value < schema.minimum) return `${repr(value)} is less than the minimum of ${String(schema.minimum)}`
  if (Array.isArray(value)) {
    if (schema.minItems != null && value.length < schema.minItems) return `${repr(value)} is too short`
    if (schema.uniqueItems === true && new Set(value.map(item => JSON.stringify(item))).size !== value.length) return `${repr(value)} has non-unique elements`
    if (schema.items != null) {
      for (const item of value) {
        const v = violation(item, schema.items, root)
        if (v != null) return v
      }
    }
  }
  if (value != null && typeof value === 'object' && !Array.isArray(value)) return objectViolation(value as Record<string, unknown>, schema, root)
  return undefined
}

function objectViolation (value: Record<string, unknown>, schema: Schema, root: Schema): string | undefined {
  for (const key of schema.required ?? []) {
    if (!Object.hasOwn(value, key)) return `'${String(key)}' is a required property`
  }
  const known: Record<string, Schema> = schema.properties ?? {}
  const unexpected: string[] = []
  for (const [key, item] of Object.entries(value)) {
    const own = Object.hasOwn(known, key) ? known[key] : undefined
    const rule = own ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined)
    if (own == null && schema.additionalProperties === false) unexpected.push(key)
    const v = rule == null ? undefined : violation(item, rule, root)
    if (v != null) return v
  }
  if (unexpected.length > 0) {
    return `Additional properties are not allowed (${unexpected.map(k => `'${k}'`).join(', ')} ${unexpected.length === 1 ? 'was' : 'were'} unexpected)`
  }
  return undefined
}

/** A `#/definitions/name` reference within the document being checked. */
function resolve (ref: string, root: Schema): Schema {
  const name = /^#\/definitions\/([\w-]+)$/.exec(ref)?.[1]
  const target = name == null ? undefined : root.definitions?.[name]
  if (target == null) throw new Error(`unresolvable schema reference ${ref}`)
  return target
}

/** Throws Glance's 400 for a body that fails the schema. */
export function check (name: string, value: unknown, schema: Schema): void {
  const v = violation(value, schema, schema)
  if (v != null) throw new ValidationError(`Provided object does not match schema '${name}': ${v}`)
}

function isType (value: unknown, type: string): boolean {
  switch (type) {
    case 'null': return value === null
    case 'string': return typeof value === 'string'
    case 'boolean': return typeof value === 'boolean'
    case 'integer': return Number.isInteger(value)
    case 'number': return typeof value === 'number'
    case 'array': return Array.isArray(value)
    case 'object': return value != null && typeof value === 'object' && !Array.isArray(value)
    default: return true
  }
}

/** Python's repr of a JSON value, close enough for messages. */
function repr (value: unknown): string {
  if (value === null) return 'None'
  if (value === true) return 'True'
  if (value === false) return 'False'
  if (typeof value === 'string') return `'${value}'`
  return JSON.stringify(value)
}
