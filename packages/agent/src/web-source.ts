import { lookup } from 'node:dns/promises'
import http from 'node:http'
import https from 'node:https'
import type { IncomingMessage } from 'node:http'
import { BlockList, isIP } from 'node:net'
import type { LookupFunction } from 'node:net'
import { ValidationError } from '@peerglance/interface'
import type { AbortOptions, ExternalData, WebSource } from '@peerglance/interface'
import { normalizeHost, uriRefusal } from '@peerglance/glance-domain'
import type { UriFilter } from '@peerglance/glance-domain'

export interface WebSourceInit extends UriFilter {
  /** CIDR ranges that may be fetched from although they are not public addresses. */
  allowedNetworks: readonly string[]
  maxRedirects: number
  /** Nothing received for this long: the download fails. */
  timeoutMs: number
}

/**
 * Addresses web-download never connects to unless the operator lists them in `allowedNetworks`:
 * everything that is not a public unicast address (RFC 6890 special-purpose registries), so an
 * import cannot reach the agent's own host, the cloud's metadata service or the private network
 * behind it, whatever a name resolves to.
 */
const NOT_PUBLIC: ReadonlyArray<[string, number, 'ipv4' | 'ipv6']> = [
  ['0.0.0.0', 8, 'ipv4'], ['10.0.0.0', 8, 'ipv4'], ['100.64.0.0', 10, 'ipv4'], ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'], ['172.16.0.0', 12, 'ipv4'], ['192.0.0.0', 24, 'ipv4'], ['192.0.2.0', 24, 'ipv4'],
  ['192.88.99.0', 24, 'ipv4'], ['192.168.0.0', 16, 'ipv4'], ['198.18.0.0', 15, 'ipv4'], ['198.51.100.0', 24, 'ipv4'],
  ['203.0.113.0', 24, 'ipv4'], ['224.0.0.0', 4, 'ipv4'], ['240.0.0.0', 4, 'ipv4'],
  // ::/96 holds ::, ::1 and the old IPv4-compatible forms; IPv4-mapped ones are checked as IPv4 (v4Of).
  ['::', 96, 'ipv6'], ['64:ff9b:1::', 48, 'ipv6'], ['100::', 64, 'ipv6'], ['2001::', 23, 'ipv6'],
  ['2001:db8::', 32, 'ipv6'], ['2002::', 16, 'ipv6'], ['fc00::', 7, 'ipv6'], ['fe80::', 10, 'ipv6'], ['ff00::', 8, 'ipv6']
]

/**
 * web-download's HTTP client, built against SSRF: each URI (the first and every redirect) must
 * pass Glance's filters, its host is resolved once and every address checked, and the connection
 * goes to the checked address (no second lookup a DNS rebinding could answer differently).
 * Redirects are followed by hand, at most `maxRedirects`, each one judged as the first URI was.
 */
export class HttpWebSource implements WebSource {
  readonly #init: WebSourceInit
  readonly #notPublic = new BlockList()
  readonly #allowed = new BlockList()

  constructor (init: WebSourceInit) {
    this.#init = init
    for (const [net, prefix, type] of NOT_PUBLIC) this.#notPublic.addSubnet(net, prefix, type)
    for (const cidr of init.allowedNetworks) {
      const [net, prefix] = cidr.split('/')
      const type = isIP(net) === 6 ? 'ipv6' : 'ipv4'
      this.#allowed.addSubnet(net, prefix == null ? (type === 'ipv6' ? 128 : 32) : Number(prefix), type)
    }
  }

  async open (uri: string, opts: AbortOptions = {}): Promise<ExternalData> {
    let current = uri
    for (let hop = 0; ; hop++) {
      const res = await this.#get(current, opts.signal)
      const status = res.statusCode ?? 0
      if (status >= 300 && status < 400 && res.headers.location != null) {
        res.resume()
        if (hop >= this.#init.maxRedirects) throw new ValidationError(`web-download followed ${hop} redirects from ${uri}; stopped`)
        current = new URL(res.headers.location, current).toString()
        continue
      }
      if (status !== 200) {
        res.resume()
        throw new ValidationError(`web-download of ${current} answered ${status}`)
      }
      const length = res.headers['content-length']
      return { body: res, ...(length != null && /^\d+$/.test(length) ? { size: Number(length) } : {}) }
    }
  }

  /** One request to a URI that passed every check, connected to the address that was checked. */
  async #get (uri: string, signal?: AbortSignal): Promise<IncomingMessage> {
    const refusal = uriRefusal(uri, this.#init)
    if (refusal != null) throw new ValidationError(`web-download refused: ${refusal}`)
    const url = new URL(uri)
    const { address, family } = await this.#resolve(normalizeHost(url.hostname))
    const pinned: LookupFunction = (_host, options, callback) => {
      if ((options as { all?: boolean }).all === true) (callback as unknown as (e: null, a: Array<{ address: string, family: number }>) => void)(null, [{ address, family }])
      else callback(null, address, family)
    }
    const client = url.protocol === 'https:' ? https : http
    return await new Promise<IncomingMessage>((resolve, reject) => {
      const req = client.get(url, { lookup: pinned, signal, timeout: this.#init.timeoutMs, headers: { 'user-agent': 'peerglance web-download' } }, res => {
        res.setTimeout(this.#init.timeoutMs, () => { res.destroy(new Error(`web-download of ${uri}: nothing received for ${this.#init.timeoutMs} ms`)) })
        resolve(res)
      })
      req.on('timeout', () => { req.destroy(new Error(`web-download of ${uri}: no answer within ${this.#init.timeoutMs} ms`)) })
      req.on('error', reject)
    })
  }

  /** The first address of the host that may be fetched from; a host the operator allowed by name may be anywhere (as in Glance). */
  async #resolve (host: string): Promise<{ address: string, family: number }> {
    const literal = isIP(host)
    const addresses = literal !== 0 ? [{ address: host, family: literal }] : await lookup(host, { all: true, verbatim: true }).catch(() => [])
    if (addresses.length === 0) throw new ValidationError(`web-download refused: failed to resolve external host ${host}`)
    const named = this.#init.allowedHosts.map(normalizeHost).includes(host)
    const denied = new Set(this.#init.allowedHosts.length > 0 ? [] : this.#init.disallowedHosts.map(normalizeHost))
    for (const a of addresses) {
      if (named) return a
      if (denied.has(a.address)) continue
      const type = a.family === 6 ? 'ipv6' : 'ipv4'
      const mapped = type === 'ipv6' ? v4Of(a.address) : undefined
      const [check, checkType] = mapped == null ? [a.address, type] as const : [mapped, 'ipv4'] as const
      if (this.#notPublic.check(check, checkType) && !this.#allowed.check(check, checkType)) continue
      return a
    }
    throw new ValidationError(`web-download refused: no allowed addresses for external host ${host}`)
  }
}

/**
 * The IPv4 address an IPv4-mapped IPv6 address (or one behind the NAT64 prefix 64:ff9b::/96)
 * stands for, in either spelling (`::ffff:127.0.0.1`, or `::ffff:7f00:1` as the URL parser writes
 * it), so the IPv4 rules judge it.
 */
function v4Of (address: string): string | undefined {
  const m = /^(?:::ffff|64:ff9b:):(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(address)
  if (m == null) return undefined
  if (m[1] != null) return m[1]
  const hi = parseInt(m[2], 16)
  const lo = parseInt(m[3], 16)
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}
