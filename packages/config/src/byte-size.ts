import { ConfigError } from './errors.ts'

/**
 * Glance's `user_storage_quota` syntax: digits, then optionally B, KB, MB, GB or TB, no space,
 * upper case (glance/api/common.py get_remaining_quota uses exactly `^(\d+)((K|M|G|T)?B)?$`).
 */
export const BYTE_SIZE_PATTERN = '^(\\d+)((K|M|G|T)?B)?$'

const BYTE_SIZE_RE = new RegExp(BYTE_SIZE_PATTERN)

// Glance multiplies by oslo units.Ki/Mi/Gi/Ti, so "KB" means 1024 bytes, not 1000.
const UNIT_FACTOR: Record<string, number> = { B: 1, KB: 2 ** 10, MB: 2 ** 20, GB: 2 ** 30, TB: 2 ** 40 }

/** Bytes in a Glance size string: `parseByteSize('10GB') === 10 * 2 ** 30`; `'0'` is 0 (no quota). */
export function parseByteSize (s: string): number {
  const match = BYTE_SIZE_RE.exec(s)
  if (match == null) {
    throw new ConfigError(`invalid byte size "${s}": expected a whole number with an optional unit B, KB, MB, GB or TB, e.g. 10GB`)
  }
  const bytes = Number(match[1]) * UNIT_FACTOR[match[2] ?? 'B']
  // Beyond 2^53 a JS number no longer counts bytes exactly, and quota checks would round.
  if (!Number.isSafeInteger(bytes)) {
    throw new ConfigError(`invalid byte size "${s}": larger than ${Number.MAX_SAFE_INTEGER} bytes`)
  }
  return bytes
}

/** Whether `s` is a usable size; lets the schema reuse parseByteSize's rules. */
export function isByteSize (s: string): boolean {
  try {
    parseByteSize(s)
    return true
  } catch {
    return false
  }
}
