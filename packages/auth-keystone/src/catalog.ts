/** A service of a Keystone v3 token's catalog (`token.catalog`, or GET /v3/auth/catalog). */
export interface CatalogEntry {
  type?: string
  endpoints?: Array<{ interface?: string, region?: string, region_id?: string, url?: string }>
}

/**
 * The URL of the first of `interfaces` (in that order) that the catalog has for a service of
 * `type` in `region`, without a trailing slash; undefined when there is none. Regions compare
 * without case, as Keystone's ids are unique without it.
 */
export function catalogEndpoint (catalog: CatalogEntry[], want: { type: string, region: string, interfaces: readonly string[] }): string | undefined {
  const region = want.region.toLowerCase()
  const endpoints = catalog.filter(s => s.type === want.type).flatMap(s => s.endpoints ?? [])
    .filter(e => (e.region_id ?? e.region ?? '').toLowerCase() === region && typeof e.url === 'string')
  for (const kind of want.interfaces) {
    const url = endpoints.find(e => e.interface === kind)?.url
    if (url != null) return url.replace(/\/+$/, '')
  }
  return undefined
}
