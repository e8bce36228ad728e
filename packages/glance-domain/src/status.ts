import { InvalidStatusTransitionError } from '@peerglance/interface'
import type { ImageRecord, ImageStatus } from '@peerglance/interface'
import { now } from './time.ts'

/** glance/domain/__init__.py Image.valid_state_targets: the only statuses each may move to. */
const NEXT: Record<ImageStatus, readonly ImageStatus[]> = {
  queued: ['saving', 'uploading', 'importing', 'active', 'deleted'],
  saving: ['active', 'queued', 'killed', 'deleted'],
  uploading: ['importing', 'queued', 'deleted'],
  importing: ['active', 'queued', 'deleted'],
  active: ['deactivated', 'pending_delete', 'deleted'],
  deactivated: ['active', 'deleted'],
  pending_delete: ['deleted', 'active'],
  killed: ['deleted'],
  deleted: []
}

export function canTransition (from: ImageStatus, to: ImageStatus): boolean {
  return NEXT[from].includes(to)
}

/**
 * Whether `to` follows `from` by any number of allowed transitions: replication may skip the
 * steps between (queued, then saving, then active arrives as queued then active).
 */
export function canReach (from: ImageStatus, to: ImageStatus): boolean {
  if (from === to) return true
  const seen = new Set<ImageStatus>([from])
  const todo = [from]
  for (let next = todo.pop(); next != null; next = todo.pop()) {
    for (const s of NEXT[next] ?? []) {
      if (s === to) return true
      if (!seen.has(s)) { seen.add(s); todo.push(s) }
    }
  }
  return false
}

/** The one function that changes `status`. Going back to queued forgets the data, as Glance does. */
export function transition (image: ImageRecord, to: ImageStatus): ImageRecord {
  if (!canTransition(image.status, to)) {
    throw new InvalidStatusTransitionError(`Image status transition from ${image.status} to ${to} is not allowed`)
  }
  const next = { ...image, status: to, updated_at: now() }
  if (to === 'queued') Object.assign(next, { size: null, virtual_size: null, checksum: null, os_hash_algo: null, os_hash_value: null })
  return next
}

/** Statuses whose data Glance serves; the rest answer 204 "no data". */
export const HAS_SERVABLE_DATA: ReadonlySet<ImageStatus> = new Set(['active', 'deactivated'])
