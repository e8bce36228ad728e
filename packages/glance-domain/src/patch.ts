import { ReadOnlyPropertyError, ReservedPropertyError, ValidationError } from '@peerglance/interface'
import { READ_ONLY, isReserved } from './properties.ts'

export type PatchDialect = '2.0' | '2.1'
export type PatchOp = 'add' | 'replace' | 'remove'

export interface PatchChange { op: PatchOp, path: string, value?: unknown }

export const PATCH_MEDIA_TYPES: Record<string, PatchDialect> = {
  'application/openstack-images-v2.0-json-patch': '2.0',
  'application/openstack-images-v2.1-json-patch': '2.1'
}

const OPS: readonly PatchOp[] = ['add', 'replace', 'remove']

/**
 * Parses and validates a whole PATCH body before anything is applied, as Glance's
 * RequestDeserializer does: shape errors are 400, read-only and reserved targets 403.
 */
export function parsePatch (body: unknown, dialect: PatchDialect): PatchChange[] {
  if (!Array.isArray(body)) throw new ValidationError('Request body must be a JSON array of operation objects.')
  return body.map(raw => {
    if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw new ValidationError('Operations must be JSON objects.')
    const change = dialect === '2.1' ? parseV21(raw) : parseV20(raw)
    const key = change.path.slice(1)
    if (READ_ONLY.has(key)) throw new ReadOnlyPropertyError(key)
    if (isReserved(key)) throw new ReservedPropertyError(key)
    return change
  })
}

function parseV21 (raw: Record<string, unknown>): PatchChange {
  const op = raw.op
  if (typeof op !== 'string' || !(OPS as string[]).includes(op)) {
    throw new ValidationError(`Unable to find \`op\` in JSON Schema change. It must be one of the following: ${OPS.join(', ')}.`)
  }
  if (typeof raw.path !== 'string') throw new ValidationError('Unable to find \'path\' in JSON Schema change')
  return withValue(op as PatchOp, raw.path, raw)
}

function parseV20 (raw: Record<string, unknown>): PatchChange {
  const ops = OPS.filter(op => op in raw)
  if (ops.length !== 1) {
    throw new ValidationError(`Operation objects must contain exactly one member named "add", "remove", or "replace".`)
  }
  const op = ops[0]
  const path = raw[op]
  if (typeof path !== 'string') throw new ValidationError(`Unable to find '${op}' in JSON Schema change`)
  return withValue(op, path, raw)
}

function withValue (op: PatchOp, pointer: string, raw: Record<string, unknown>): PatchChange {
  const path = normalisePointer(pointer)
  if (op === 'remove') return { op, path }
  if (!('value' in raw)) throw new ValidationError(`Operation "${op}" requires a member named "value".`)
  return { op, path, value: raw.value }
}

/** JSON pointer rules from glance/api/v2/images.py _decode_json_pointer; only depth 1 is an image attribute. */
function normalisePointer (pointer: string): string {
  if (!pointer.startsWith('/')) throw new ValidationError(`Pointer \`${pointer}\` does not start with "/".`)
  if (pointer.includes('//')) throw new ValidationError(`Pointer \`${pointer}\` contains adjacent "/".`)
  if (pointer.length > 1 && pointer.endsWith('/')) throw new ValidationError(`Pointer \`${pointer}\` end with "/".`)
  if (/~(?![01])/.test(pointer)) throw new ValidationError(`Pointer \`${pointer}\` contains "~" not part of a recognized escape sequence.`)
  const segments = pointer.slice(1).split('/').map(s => s.trim().replaceAll('~1', '/').replaceAll('~0', '~'))
  // Locations are hidden (show_multiple_locations=False), so `/locations/-` is refused as reserved, not malformed.
  if (segments[0] === 'locations') return '/locations'
  if (segments.length !== 1 || segments[0] === '') {
    throw new ValidationError(`Invalid JSON pointer for this resource: '${pointer}'`)
  }
  return `/${segments[0]}`
}
