/**
 * Version discovery (glance/api/versions.py, glance-api.md §1). We list what a single-store Glance
 * with the image cache (API 2.14–2.16) lists, in its (unsorted) order; 2.18's cache additions
 * (clean, prune, nodes) are not served, so 2.17 stays CURRENT.
 */
const VERSIONS = ['2.16', '2.15', '2.14', '2.9', '2.17', '2.7', '2.6', '2.5', '2.4', '2.3', '2.2', '2.1', '2.0']
const CURRENT = '2.17'

/** URL prefixes that version negotiation rewrites to `/v2` in this deployment. */
const ALIASES = new Set(['v2', 'v2.0', 'v2.1', 'v2.2', 'v2.3', 'v2.4', 'v2.5', 'v2.6', 'v2.7', 'v2.9', 'v2.14', 'v2.15', 'v2.16', 'v2.17'])

export function versionsDocument (href: string): Record<string, unknown> {
  return {
    versions: VERSIONS.map(v => ({ id: `v${v}`, status: v === CURRENT ? 'CURRENT' : 'SUPPORTED', links: [{ rel: 'self', href }] }))
  }
}

/** `/v2.6/images` → `/v2/images`; everything else unchanged. */
export function negotiateUrl (url: string): string {
  const m = /^\/(v2(?:\.\d+)?)(?=\/|\?|$)/.exec(url)
  if (m == null || m[1] === 'v2' || !ALIASES.has(m[1])) return url
  return `/v2${url.slice(m[0].length)}`
}
