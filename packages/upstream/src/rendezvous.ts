import { createHash } from 'node:crypto'

/**
 * Rendezvous (highest random weight) hashing: every agent that knows the same members ranks them
 * the same way for a key, and a member joining or leaving moves only the keys it ranks first.
 */
export function rank (key: string, members: Iterable<string>): string[] {
  const scored = [...new Set(members)].map(id => [createHash('sha256').update(`${key}\n${id}`).digest('hex'), id] as const)
  return scored.sort((a, b) => a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : 0).map(([, id]) => id)
}
