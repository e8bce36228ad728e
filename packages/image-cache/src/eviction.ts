/** What the eviction policy knows of one image held here. */
export interface Candidate {
  imageId: string
  /** Bytes its chunks take here (an upper bound: chunks shared with other images count for each). */
  bytes: number
  lastAccessed: number
  /** Kept whatever the pressure: the operator pinned it, or its site keeps it here. */
  pinned: boolean
}

export interface Pressure {
  /** Bytes of chunk files now. */
  used: number
  /** Bytes the cache may use (cap, or share of the disk). */
  max: number
  /** Eviction starts above high × max and stops at low × max. */
  high: number
  low: number
}

/** How many bytes to free now: none below the high watermark, down to the low one above it. */
export function bytesToFree (p: Pressure): number {
  if (p.used <= p.high * p.max) return 0
  return Math.ceil(p.used - p.low * p.max)
}

/**
 * The order to try evicting in: least recently read first, pinned images never. Whether each may
 * go (the mesh's last copies may not) is asked per image by the caller, because asking peers costs
 * a round trip and most sweeps stop after a few images.
 */
export function evictionOrder (candidates: readonly Candidate[]): Candidate[] {
  return candidates.filter(c => !c.pinned).sort((a, b) => a.lastAccessed - b.lastAccessed || a.imageId.localeCompare(b.imageId))
}
