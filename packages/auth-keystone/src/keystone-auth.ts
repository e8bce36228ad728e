import { AuthUnavailableError, NotAuthenticatedError, silentLogger } from '@peerglance/interface'
import type { Authenticator, Identity, Logger, RequestHeaders } from '@peerglance/interface'
import { KeystoneSession } from './keystone-session.ts'
import type { KeystoneCredentials } from './keystone-session.ts'
import { TokenCache } from './token-cache.ts'

/** The agent's own account (a user in a project; keystonemiddleware takes no application credential here). */
export interface KeystoneAuthInit extends Omit<KeystoneCredentials, 'applicationCredentialId' | 'applicationCredentialSecret'> {
  /** Validate through this region's identity endpoint from the agent's catalog; null: `url`. */
  region: string | null
  cacheSeconds: number
  maxCachedTokens?: number
  timeoutMs?: number
}

export interface KeystoneAuthComponents {
  logger?: Logger
  /** Milliseconds since the epoch; tests move time. */
  now?: () => number
}

// keystonemiddleware's service_token_roles default.
const SERVICE_TOKEN_ROLES = ['service']
const MAX_CACHED_TOKENS = 10_000
const TIMEOUT_MS = 10_000
// Fernet tokens are ~200 bytes, JWS ~800; anything far bigger is not worth sending to Keystone.
const MAX_TOKEN_LENGTH = 8192
const TOKEN_SYNTAX = /^[\x21-\x7e]+$/
const UNAUTHENTICATED = 'The request you have made requires authentication.'

interface Validated {
  identity: Identity
  expiresAt: number
  /** The token came from an application credential restricted by access rules. */
  restricted: boolean
}

/**
 * Validates each request's X-Auth-Token with Keystone v3, as keystonemiddleware's auth_token:
 * with the agent's own token (renewed before it expires) and X-Subject-Token, `nocatalog`, and
 * `allow_expired` only when a valid X-Service-Token with the service role vouches for the
 * request. A missing or invalid token is NotAuthenticatedError (401); Keystone unreachable or
 * refusing the agent is AuthUnavailableError (503): it never lets a request through unchecked.
 * Tokens are never logged.
 */
export class KeystoneAuthenticator implements Authenticator {
  readonly challenge: string
  readonly #init: KeystoneAuthInit
  readonly #log: Logger
  readonly #now: () => number
  readonly #cache: TokenCache<Validated>
  /** The agent's own token, which Keystone asks for beside each token it validates. */
  readonly #session: KeystoneSession
  #validateBase: string | undefined

  constructor (components: KeystoneAuthComponents, init: KeystoneAuthInit) {
    this.#init = { ...init, url: init.url.replace(/\/+$/, '') }
    this.#log = components.logger ?? silentLogger
    this.#now = components.now ?? Date.now
    this.#cache = new TokenCache(init.cacheSeconds * 1000, init.maxCachedTokens ?? MAX_CACHED_TOKENS)
    this.challenge = `Keystone uri="${this.#init.url}"`
    this.#session = new KeystoneSession(this.#init, {
      timeoutMs: init.timeoutMs ?? TIMEOUT_MS,
      catalog: init.region != null,
      label: 'The identity service',
      logger: this.#log,
      now: this.#now
    })
  }

  async authenticate (headers: RequestHeaders, opts: { signal?: AbortSignal } = {}): Promise<Identity> {
    const userToken = tokenIn(headers, 'x-auth-token')
    if (userToken == null) throw new NotAuthenticatedError(UNAUTHENTICATED)
    let allowExpired = false
    const serviceToken = tokenIn(headers, 'x-service-token')
    if (serviceToken != null) {
      const service = await this.#lookup(serviceToken, false, opts.signal)
      // An invalid service token rejects the request even when the user's token is valid.
      if (service == null) throw new NotAuthenticatedError(UNAUTHENTICATED)
      allowExpired = service.identity.roles.some(role => SERVICE_TOKEN_ROLES.includes(role))
    }
    const user = await this.#lookup(userToken, allowExpired, opts.signal)
    if (user == null) throw new NotAuthenticatedError(UNAUTHENTICATED)
    // Access rules name the API calls an application credential may make; until they are
    // matched here, a restricted credential gets nothing (keystonemiddleware lets a service
    // token vouch for it, as a request made on the user's behalf).
    if (user.restricted && serviceToken == null) throw new NotAuthenticatedError(UNAUTHENTICATED)
    return user.identity
  }

  /** The token's identity, or undefined when Keystone does not know it or it has expired. */
  async #lookup (token: string, allowExpired: boolean, signal: AbortSignal | undefined): Promise<Validated | undefined> {
    if (token.length > MAX_TOKEN_LENGTH || !TOKEN_SYNTAX.test(token)) return undefined
    const cached = this.#cache.get(token, { allowExpired, now: this.#now() })
    if (cached != null) return cached
    const validated = await this.#validate(token, allowExpired, signal)
    if (validated == null) return undefined
    this.#cache.set(token, validated, validated.expiresAt, this.#now())
    if (!allowExpired && validated.expiresAt <= this.#now()) return undefined
    return validated
  }

  async #validate (token: string, allowExpired: boolean, signal: AbortSignal | undefined): Promise<Validated | undefined> {
    const base = await this.#validateBaseUrl()
    const query = allowExpired ? '?nocatalog&allow_expired=1' : '?nocatalog'
    const ask = async (agentToken: string): Promise<Response> => await this.#fetch(`${base}/auth/tokens${query}`, {
      headers: { 'x-auth-token': agentToken, 'x-subject-token': token, accept: 'application/json' }
    }, signal)
    let res = await ask(await this.#session.token())
    if (res.status === 401) {
      // The agent's own token was revoked or Keystone lost its keys: get a new one, once.
      await res.body?.cancel()
      res = await ask(await this.#session.token(true))
    }
    if (res.status === 404) {
      await res.body?.cancel()
      return undefined
    }
    if (res.status !== 200) {
      await res.body?.cancel()
      const hint = res.status === 403 ? '; give the agent\'s user the service role' : ''
      this.#log.error({ status: res.status, user: this.#init.username }, `keystone refused to validate a token${hint}`)
      throw new AuthUnavailableError('The identity service refused to validate the token.')
    }
    return parseToken(await this.#json(res))
  }

  /** `url`, or the region's identity endpoint in the agent's catalog (keystonemiddleware's region_name). */
  async #validateBaseUrl (): Promise<string> {
    const region = this.#init.region
    if (region == null) return this.#init.url
    if (this.#validateBase == null) {
      const found = await this.#session.endpoint('identity', region)
      this.#validateBase = found == null ? this.#init.url : /\/v3$/.test(found) ? found : `${found}/v3`
      this.#log.info({ validateBase: this.#validateBase }, 'validating tokens at the region\'s identity endpoint')
    }
    return this.#validateBase
  }

  async #fetch (url: string, init: RequestInit, signal?: AbortSignal): Promise<Response> {
    const timeout = AbortSignal.timeout(this.#init.timeoutMs ?? TIMEOUT_MS)
    try {
      return await fetch(url, { ...init, signal: signal == null ? timeout : AbortSignal.any([timeout, signal]) })
    } catch (err) {
      // The client went away: nothing is wrong with Keystone, and nobody reads the answer.
      if (signal?.aborted === true) throw new AuthUnavailableError('The request ended while its token was being validated.')
      this.#log.warn({ err: { name: (err as Error).name, message: (err as Error).message, cause: String((err as Error).cause ?? '') }, url }, 'keystone is unreachable')
      throw new AuthUnavailableError('The identity service is unavailable.')
    }
  }

  async #json (res: Response): Promise<unknown> {
    try {
      return await res.json()
    } catch {
      throw new AuthUnavailableError('The identity service sent an unreadable answer.')
    }
  }
}

function tokenIn (headers: RequestHeaders, name: string): string | undefined {
  const v = headers[name]
  const s = (Array.isArray(v) ? v[0] : v)?.trim()
  return s == null || s === '' ? undefined : s
}

interface TokenBody {
  token?: {
    expires_at?: string
    user?: { id?: string }
    project?: { id?: string }
    domain?: { id?: string }
    system?: { all?: boolean }
    roles?: Array<{ name?: string }>
    application_credential?: { access_rules?: unknown[] }
  }
}

function parseToken (body: unknown): Validated | undefined {
  const t = (body as TokenBody | null)?.token
  const expiresAt = Date.parse(t?.expires_at ?? '')
  if (t?.user?.id == null || Number.isNaN(expiresAt)) return undefined
  return {
    identity: {
      userId: t.user.id,
      projectId: t.project?.id ?? null,
      roles: (t.roles ?? []).flatMap(r => typeof r.name === 'string' ? [r.name.toLowerCase()] : []),
      // keystonemiddleware's OpenStack-System-Scope and X-Domain-Id: the policy tells scopes apart by them.
      systemScope: t.system?.all === true ? 'all' : null,
      domainId: t.project == null ? t.domain?.id ?? null : null
    },
    expiresAt,
    restricted: (t.application_credential?.access_rules?.length ?? 0) > 0
  }
}
