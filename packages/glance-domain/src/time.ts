/** Glance renders timestamps at second resolution with a `Z` (glance/common/timeutils.py isotime). */
export function now (): string {
  return isoSeconds(new Date())
}

export function isoSeconds (date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}
