import { isIPv6 } from 'node:net'
import { ConfigError } from './errors.ts'

const PORT = '(?:0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])'
// An IPv6 literal needs brackets, else its colons cannot be told from the port separator.
const HOST = '(?:\\[[0-9A-Fa-f:.]+(?:%[0-9A-Za-z_.-]+)?\\]|[0-9A-Za-z](?:[0-9A-Za-z.-]*[0-9A-Za-z])?)'

/** `HOST:PORT` with a port of 0..65535 (0: any free port, which tests use); the host is a name, an IPv4 address or `[IPv6]`. */
export const LISTEN_PATTERN = `^${HOST}:${PORT}$`

const LISTEN_RE = new RegExp(LISTEN_PATTERN)

/**
 * Splits an `api.listen` value into what `server.listen()` takes. Brackets are removed from
 * IPv6 hosts: `parseListen('[::1]:9292')` is `{ host: '::1', port: 9292 }`.
 */
export function parseListen (s: string): { host: string, port: number } {
  if (!LISTEN_RE.test(s)) {
    throw new ConfigError(`invalid listen address "${s}": expected HOST:PORT with a port of 0-65535, e.g. 127.0.0.1:9292 or [::1]:9292`)
  }
  const colon = s.lastIndexOf(':')
  let host = s.slice(0, colon)
  if (host.startsWith('[')) {
    host = host.slice(1, -1)
    // The pattern admits any run of hex digits and colons; only a real address will bind.
    if (!isIPv6(host.split('%')[0])) throw new ConfigError(`invalid listen address "${s}": "${host}" is not an IPv6 address`)
  }
  return { host, port: Number(s.slice(colon + 1)) }
}

/** Whether `s` is a usable listen address; lets the schema reuse parseListen's rules. */
export function isListen (s: string): boolean {
  try {
    parseListen(s)
    return true
  } catch {
    return false
  }
}
