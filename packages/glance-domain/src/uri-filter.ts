/**
 * Glance's `[import_filtering_opts]`: which URIs web-download may fetch, judged on the URI alone
 * (glance/common/utils.py get_validated_address). Where a name resolves to is the fetcher's
 * check; it applies this filter again to every redirect.
 */
export interface UriFilter {
  allowedSchemes: readonly string[]
  disallowedSchemes: readonly string[]
  allowedHosts: readonly string[]
  disallowedHosts: readonly string[]
  allowedPorts: readonly number[]
  disallowedPorts: readonly number[]
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 }

/** A host as the filter lists compare it: lowercase, no trailing dot, IPv6 without brackets. */
export function normalizeHost (host: string): string {
  return host.toLowerCase().replace(/\.$/, '').replace(/^\[(.*)\]$/, '$1')
}

/** Why the URI may not be fetched, or undefined. A list and its opposite: only the allowed list counts (as Glance). */
export function uriRefusal (uri: string, filter: UriFilter): string | undefined {
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    return `URI ${uri.slice(0, 200)} is not a valid URI`
  }
  const scheme = url.protocol.slice(0, -1)
  const schemeOk = filter.allowedSchemes.length > 0 ? filter.allowedSchemes.includes(scheme) : !filter.disallowedSchemes.includes(scheme)
  if (!schemeOk) return `scheme not allowed for external URI: ${uri}`
  const host = normalizeHost(url.hostname)
  const hostOk = host !== '' && (filter.allowedHosts.length > 0 ? filter.allowedHosts.map(normalizeHost).includes(host) : !filter.disallowedHosts.map(normalizeHost).includes(host))
  if (!hostOk) return `host not allowed for external URI: ${uri}`
  const port = url.port === '' ? DEFAULT_PORTS[url.protocol] : Number(url.port)
  if (port != null) {
    const portOk = filter.allowedPorts.length > 0 ? filter.allowedPorts.includes(port) : !filter.disallowedPorts.includes(port)
    if (!portOk) return `port not allowed for external URI: ${uri}`
  }
  if (url.username !== '' || url.password !== '') return `credentials in an external URI are not accepted: ${url.protocol}//${url.host}`
  return undefined
}
