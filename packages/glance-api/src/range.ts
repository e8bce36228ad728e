import { RangeNotSatisfiableError, ValidationError } from '@peerglance/interface'

export interface ByteRange { start: number, end: number }

/**
 * Parses `Range: bytes=a-b | a- | -n` (or the legacy `Content-Range: bytes a-b/*`) against the
 * image size, with Glance's statuses: several ranges 400, unparsable or unsatisfiable 416.
 */
export function parseRange (range: string | undefined, contentRange: string | undefined, size: number): ByteRange | undefined {
  if (range == null) return contentRange == null ? undefined : parseContentRange(contentRange, size)
  const spec = range.trim()
  if (!spec.startsWith('bytes=')) throw new RangeNotSatisfiableError(`Invalid Range header: ${range}`)
  if (spec.includes(',')) throw new ValidationError('Multiple ranges are not supported.')
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(spec)
  if (m == null || (m[1] === '' && m[2] === '')) throw new RangeNotSatisfiableError(`Invalid Range header: ${range}`)
  if (m[1] === '') {
    const n = Number(m[2])
    if (n === 0 || size === 0) throw new RangeNotSatisfiableError(`Requested range not satisfiable: ${range}`)
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (start >= size || start > end) throw new RangeNotSatisfiableError(`Requested range not satisfiable: ${range}`)
  return { start, end }
}

function parseContentRange (header: string, size: number): ByteRange {
  const m = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim())
  if (m == null) throw new RangeNotSatisfiableError(`Invalid Content-Range header: ${header}`)
  const start = Number(m[1])
  const end = Math.min(Number(m[2]), size - 1)
  if (start >= size || start > end) throw new RangeNotSatisfiableError(`Requested range not satisfiable: ${header}`)
  return { start, end }
}
