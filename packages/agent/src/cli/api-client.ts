import { CommandError } from './io.ts'

export interface ApiClientInit {
  /** The agent's Glance API, e.g. http://127.0.0.1:9292. */
  url: string
  /** Sent as X-Auth-Token when the agent validates tokens (OS_AUTH_TOKEN). */
  token?: string
}

/** The few calls the operator commands make to an agent's API, with Glance's error text on failure. */
export class ApiClient {
  readonly url: string
  readonly #token: string | undefined

  constructor (init: ApiClientInit) {
    this.url = init.url.replace(/\/+$/, '')
    this.#token = init.token
  }

  async json<T> (method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, {
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
    })
    return await res.json() as T
  }

  /** The response, unless its status is an error that `accepted` does not list (then CommandError). */
  async request (method: string, path: string, init: RequestInit & { duplex?: 'half' } = {}, accepted: readonly number[] = []): Promise<Response> {
    const headers = new Headers(init.headers)
    if (this.#token != null) headers.set('x-auth-token', this.#token)
    let res: Response
    try {
      res = await fetch(`${this.url}${path}`, { ...init, method, headers })
    } catch (err) {
      throw new CommandError(`cannot reach the agent at ${this.url}: ${causeOf(err)}`)
    }
    if (!res.ok && !accepted.includes(res.status)) throw new CommandError(`${method} ${path}: ${res.status} ${await errorText(res)}`)
    return res
  }
}

function causeOf (err: unknown): string {
  const e = err as { cause?: { code?: string, message?: string }, message?: string }
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err)
}

/** Glance's JSON error body says what went wrong in `message`; anything else is shown as sent. */
async function errorText (res: Response): Promise<string> {
  const text = await res.text()
  try {
    const body = JSON.parse(text) as { message?: string, error?: { message?: string } }
    return body.message ?? body.error?.message ?? text
  } catch {
    return text.trim()
  }
}
