import { AuthUnavailableError, silentLogger } from '@peerglance/interface'
import type { Logger } from '@peerglance/interface'
import { catalogEndpoint } from './catalog.ts'
import type { CatalogEntry } from './catalog.ts'

/** Who the agent is at a Keystone: a user in a project, or an application credential (scoped already). */
export interface KeystoneCredentials {
  /** Keystone v3, e.g. http://127.0.0.1:5000/v3. */
  url: string
  username: string
  password: string
  projectName: string
  userDomainName: string
  projectDomainName: string
  applicationCredentialId?: string
  applicationCredentialSecret?: string
}

export interface KeystoneSessionInit {
  timeoutMs?: number
  /** Ask for the catalog with the token (false: `?nocatalog`, a smaller answer when no endpoint is looked up). */
  catalog?: boolean
  /** Names the session in its log lines and errors, e.g. "the upstream's Keystone". */
  label?: string
  logger?: Logger
  /** Milliseconds since the epoch; tests move time. */
  now?: () => number
}

interface Token { token: string, expiresAt: number, renewAt: number, catalog: CatalogEntry[] }

const TIMEOUT_MS = 10_000
// Renew the token this long before it expires (keystoneauth uses 30 s).
const RENEW_MARGIN_MS = 60_000

/**
 * The agent's own token at a Keystone, as keystoneauth's session keeps one: issued on first use,
 * renewed before it expires (half way through the life of a short-lived one) or at once after a
 * service refused it, one issue at a time however many callers wait; its catalog finds endpoints.
 * Secrets and tokens are never logged. Keystone unreachable or refusing is AuthUnavailableError.
 */
export class KeystoneSession {
  readonly url: string
  readonly #c: KeystoneCredentials
  readonly #init: Required<Omit<KeystoneSessionInit, 'logger' | 'now'>>
  readonly #log: Logger
  readonly #now: () => number
  #token: Token | undefined
  #pending: Promise<Token> | undefined

  constructor (credentials: KeystoneCredentials, init: KeystoneSessionInit = {}) {
    this.url = credentials.url.replace(/\/+$/, '')
    this.#c = credentials
    this.#init = { timeoutMs: init.timeoutMs ?? TIMEOUT_MS, catalog: init.catalog ?? true, label: init.label ?? 'Keystone' }
    this.#log = init.logger ?? silentLogger
    this.#now = init.now ?? Date.now
  }

  /** The current token; `fresh` gets a new one (the last was refused). */
  async token (fresh = false): Promise<string> {
    return (await this.#current(fresh)).token
  }

  /** A service refused `token`: the next call gets a new one (unless another caller already did). */
  invalidate (token: string): void {
    if (this.#token?.token === token) this.#token = undefined
  }

  /** The first of `interfaces` the token's catalog has for `type` in `region`, or undefined. */
  async endpoint (type: string, region: string, interfaces: readonly string[] = ['internal', 'public']): Promise<string | undefined> {
    return catalogEndpoint((await this.#current(false)).catalog, { type, region, interfaces })
  }

  async #current (fresh: boolean): Promise<Token> {
    if (!fresh && this.#token != null && this.#now() < this.#token.renewAt) return this.#token
    this.#pending ??= this.#issue().finally(() => { this.#pending = undefined })
    this.#token = await this.#pending
    return this.#token
  }

  async #issue (): Promise<Token> {
    const c = this.#c
    const label = this.#init.label
    const appCredential = c.applicationCredentialId != null && c.applicationCredentialId !== ''
    const identity = appCredential
      ? { methods: ['application_credential'], application_credential: { id: c.applicationCredentialId, secret: c.applicationCredentialSecret } }
      : { methods: ['password'], password: { user: { name: c.username, domain: { name: c.userDomainName }, password: c.password } } }
    // An application credential is scoped already; a scope beside it is an error in Keystone.
    const scope = appCredential ? undefined : { project: { name: c.projectName, domain: { name: c.projectDomainName } } }
    let res: Response
    try {
      res = await fetch(`${this.url}/auth/tokens${this.#init.catalog ? '' : '?nocatalog'}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ auth: { identity, scope } }),
        signal: AbortSignal.timeout(this.#init.timeoutMs)
      })
    } catch (err) {
      this.#log.warn({ err: { name: (err as Error).name, message: (err as Error).message }, url: this.url }, `${label} is unreachable`)
      throw new AuthUnavailableError(`${label} at ${this.url} cannot be reached: ${(err as Error).message}`, { cause: err })
    }
    const token = res.headers.get('x-subject-token')
    if (res.status !== 201 || token == null) {
      await res.body?.cancel()
      this.#log.error({ status: res.status, user: appCredential ? c.applicationCredentialId : c.username, project: c.projectName }, `${label} refused the agent's own credentials`)
      throw new AuthUnavailableError(`${label} at ${this.url} refused the agent's credentials (${res.status})`)
    }
    let body: { token?: { expires_at?: string, catalog?: CatalogEntry[] } }
    try {
      body = await res.json() as typeof body
    } catch {
      throw new AuthUnavailableError(`${label} at ${this.url} sent an unreadable answer`)
    }
    const expiresAt = Date.parse(body.token?.expires_at ?? '')
    if (Number.isNaN(expiresAt)) throw new AuthUnavailableError(`${label} at ${this.url} sent a token without an expiry`)
    const now = this.#now()
    this.#log.info({ keystone: label, user: appCredential ? c.applicationCredentialId : c.username, expiresAt: new Date(expiresAt).toISOString() }, 'got the agent\'s keystone token')
    // Short-lived tokens (tests, tight deployments) renew half way through their life.
    return { token, expiresAt, renewAt: expiresAt - Math.min(RENEW_MARGIN_MS, (expiresAt - now) / 2), catalog: body.token?.catalog ?? [] }
  }
}
