import { Type } from 'typebox'
import { BYTE_SIZE_PATTERN, isByteSize } from '../byte-size.ts'

/** A size in Glance's syntax (`10GB`: digits, optional B/KB/MB/GB/TB, powers of 1024) as a config string. */
export function ByteSize (opts: { default: string, example: string, description: string }) {
  return Type.Refine(
    Type.String({
      pattern: BYTE_SIZE_PATTERN,
      errorMessage: `must be a whole number with an optional unit B, KB, MB, GB or TB, e.g. ${opts.example}`,
      default: opts.default,
      description: opts.description
    }),
    // The pattern reports syntax errors; this only catches sizes a JS number cannot count.
    (value) => !new RegExp(BYTE_SIZE_PATTERN).test(value) || isByteSize(value),
    () => `is more than ${Number.MAX_SAFE_INTEGER} bytes`
  )
}
