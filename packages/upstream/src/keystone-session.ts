import { AuthUnavailableError } from '@peerglance/interface'

export interface UpstreamCredentials {
  /** Keystone v3, e.g. http://127.0.0.1:5000/v3. */
  url: string
  username: string
  password: string
  projectName: string
  userDomainName: string
  projectDomainName: string
  applicationCredentialId: string
  applicationCredentialSecret: string
}

interface CatalogEntry {
  type?: string
  endpoints?: Array<{ interface?: string, region?: string, region_id?: string, url?: string }>
}

interface Token { token: string, renewAt: number, catalog: CatalogEntry[] }

// Renew the token this long before it expires (keystoneauth uses 30 s).
const RENEW_MARGIN_MS = 60_000

/**
 * The agent's own token at the upstream's Keystone (a service user's password, or an application
 * credential, which carries its own scope), renewed before it expires or at once when the upstream
 * refuses it. Its catalog finds the upstream Glance by region. Secrets are never logged.
 */
export class KeystoneSession {
  readonly #c: UpstreamCredentials
  readonly #timeoutMs: number
  #token: Token | undefined
  #pending: Promise<Token> | undefined

  constructor (credentials: UpstreamCredentials, init: { timeoutMs: number }) {
    this.#c = { ...credentials, url: credentials.url.replace(/\/+$/, '') }
    this.#timeoutMs = init.timeoutMs
  }

  async token (): Promise<string> {
    return (await this.#current()).token
  }

  /** The upstream refused the token: the next call gets a new one. */
  invalidate (token: string): void {
    if (this.#token?.token === token) this.#token = undefined
  }

  /** The image endpoint of `region` in the catalog (interface internal, else public). */
  async imageEndpoint (region: string): Promise<string> {
    const { catalog } = await this.#current()
    const endpoints = catalog.filter(e => e.type === 'image').flatMap(e => e.endpoints ?? [])
      .filter(e => (e.region_id ?? e.region) === region && typeof e.url === 'string')
    const url = (endpoints.find(e => e.interface === 'internal') ?? endpoints.find(e => e.interface === 'public'))?.url
    if (url == null) throw new AuthUnavailableError(`no image endpoint in region ${region} of the upstream's catalog`)
    return url.replace(/\/+$/, '')
  }

  async #current (): Promise<Token> {
    if (this.#token != null && Date.now() < this.#token.renewAt) return this.#token
    this.#pending ??= this.#issue().finally(() => { this.#pending = undefined })
    this.#token = await this.#pending
    return this.#token
  }

  async #issue (): Promise<Token> {
    const c = this.#c
    const identity = c.applicationCredentialId !== ''
      ? { methods: ['application_credential'], application_credential: { id: c.applicationCredentialId, secret: c.applicationCredentialSecret } }
      : { methods: ['password'], password: { user: { name: c.username, domain: { name: c.userDomainName }, password: c.password } } }
    // An application credential is scoped already; a scope beside it is an error in Keystone.
    const scope = c.applicationCredentialId !== '' ? undefined : { project: { name: c.projectName, domain: { name: c.projectDomainName } } }
    let res: Response
    try {
      res = await fetch(`${c.url}/auth/tokens`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ auth: { identity, scope } }),
        signal: AbortSignal.timeout(this.#timeoutMs)
      })
    } catch (err) {
      throw new AuthUnavailableError(`the upstream's Keystone at ${c.url} cannot be reached: ${(err as Error).message}`, { cause: err })
    }
    const token = res.headers.get('x-subject-token')
    if (res.status !== 201 || token == null) {
      await res.body?.cancel()
      throw new AuthUnavailableError(`the upstream's Keystone at ${c.url} refused the agent's credentials (${res.status})`)
    }
    const body = await res.json() as { token?: { expires_at?: string, catalog?: CatalogEntry[] } }
    const expiresAt = Date.parse(body.token?.expires_at ?? '')
    const renewAt = Number.isFinite(expiresAt) ? Math.max(Date.now() + 1000, expiresAt - RENEW_MARGIN_MS) : Date.now() + 300_000
    return { token, renewAt, catalog: body.token?.catalog ?? [] }
  }
}
