import { ValidationError } from '@peerglance/interface'

type Schema = Record<string, any>

/**
 * Checks one value against the handful of JSON-schema keywords the image schema uses, and words
 * the failure as Python's jsonschema does, because Glance passes that text to the client.
 */
export function violation (value: unknown, schema: Schema): string | undefined {
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
  if (Array.isArray(value) && schema.items != null) {
    for (const item of value) {
      const v = violation(item, schema.items)
      if (v != null) return v
    }
  }
  return undefined
}

/** Throws Glance's 400 for a body that fails the schema. */
export function check (name: string, value: unknown, schema: Schema): void {
  const v = violation(value, schema)
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
