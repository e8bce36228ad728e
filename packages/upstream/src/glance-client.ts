import { ChunkUnavailableError } from '@peerglance/interface'

/** An image as the upstream Glance's v2 API shows it (base attributes and extra properties, flat). */
export type UpstreamImage = Record<string, unknown> & { id: string, status: string, updated_at: string }
export interface UpstreamMember { image_id: string, member_id: string, status: string, created_at: string, updated_at: string }

/** The upstream did not answer, or answered with an error: the mesh keeps what it has. */
export class UpstreamError extends ChunkUnavailableError {}

const PAGE = 1000

/** The agent's own token at the upstream's Keystone (auth-keystone's KeystoneSession). */
export interface TokenSource {
  token: () => Promise<string>
  /** The upstream refused `token`: the next call gets a new one. */
  invalidate: (token: string) => void
}

/**
 * Glance v2 as a client of the upstream, with the agent's own token (or a caller's, for writes).
 * Every request is bounded in time; a 401 renews the agent's token once.
 */
export class GlanceClient {
  readonly #session: TokenSource
  readonly #endpoint: () => Promise<string>
  readonly #timeoutMs: number

  constructor (session: TokenSource, init: { endpoint: () => Promise<string>, timeoutMs: number }) {
    this.#session = session
    this.#endpoint = init.endpoint
    this.#timeoutMs = init.timeoutMs
  }

  /**
   * Every image the agent's user may see, all pages. Glance lists community images only with
   * `visibility=all` and hidden ones only with `os_hidden=true`, so it takes two listings.
   */
  async listImages (): Promise<UpstreamImage[]> {
    const out: UpstreamImage[] = []
    for (const hidden of [false, true]) {
      let next: string | undefined = `/v2/images?limit=${PAGE}&visibility=all${hidden ? '&os_hidden=true' : ''}`
      // Bounded: a page per PAGE images, and a cycle of `next` links would stop at the limit.
      for (let pages = 0; next != null && pages < 10_000; pages++) {
        const body = await this.json(next) as { images?: UpstreamImage[], next?: string }
        out.push(...body.images ?? [])
        next = body.next
      }
    }
    return out
  }

  async members (imageId: string): Promise<UpstreamMember[]> {
    const body = await this.json(`/v2/images/${encodeURIComponent(imageId)}/members`) as { members?: UpstreamMember[] }
    return body.members ?? []
  }

  async image (imageId: string): Promise<UpstreamImage | undefined> {
    const res = await this.request(`/v2/images/${encodeURIComponent(imageId)}`)
    if (res.status === 404) { await res.body?.cancel(); return undefined }
    return await this.#ok(res).json() as UpstreamImage
  }

  /** Bytes [start, end] (inclusive) of the image's data, as a stream (HTTP Range). */
  async download (imageId: string, start: number, end: number, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const res = await this.request(`/v2/images/${encodeURIComponent(imageId)}/file`, { headers: { range: `bytes=${start}-${end}` }, signal, stream: true })
    this.#ok(res)
    if (res.status !== 206 && !(res.status === 200 && start === 0)) {
      await res.body?.cancel()
      throw new UpstreamError(`the upstream answered ${res.status} to a range request for image ${imageId}`)
    }
    if (res.body == null) throw new UpstreamError(`the upstream sent no data for image ${imageId}`)
    return res.body
  }

  async json (path: string): Promise<unknown> {
    return await this.#ok(await this.request(path)).json()
  }

  /**
   * One request to the upstream with the agent's token (or `token`); a 401 to the agent's token
   * renews it and retries once. `stream`: no overall timeout (a download may take long), only
   * until the headers arrive and the caller's signal; `untimed`: not even that.
   */
  async request (path: string, opts: { method?: string, headers?: Record<string, string>, body?: string | ReadableStream<Uint8Array>, token?: string, signal?: AbortSignal, stream?: boolean, untimed?: boolean } = {}): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const token = opts.token ?? await this.#session.token()
      const base = await this.#endpoint()
      // A stream's timer stops once the headers are here; a JSON answer's covers its body too.
      const timer = new AbortController()
      // `untimed`: a body of the caller's is sent first, for as long as that takes.
      const timeout = setTimeout(() => { if (opts.untimed !== true) timer.abort(new Error(`no answer within ${this.#timeoutMs} ms`)) }, this.#timeoutMs)
      let res: Response
      try {
        res = await fetch(`${base}${path}`, {
          method: opts.method ?? 'GET',
          headers: { ...opts.headers, 'x-auth-token': token },
          body: opts.body,
          signal: opts.signal == null ? timer.signal : AbortSignal.any([timer.signal, opts.signal]),
          ...(opts.body != null && typeof opts.body !== 'string' ? { duplex: 'half' } : {})
        } as RequestInit)
      } catch (err) {
        clearTimeout(timeout)
        throw new UpstreamError(`the upstream Glance at ${base} cannot be reached: ${(err as Error).message}`, { cause: err })
      }
      // Firing after a JSON body was read aborts nothing; unref'd, it keeps no process alive.
      if (opts.stream === true) clearTimeout(timeout)
      else timeout.unref()
      if (res.status === 401 && opts.token == null && attempt === 0) {
        await res.body?.cancel()
        this.#session.invalidate(token)
        continue
      }
      return res
    }
  }

  #ok (res: Response): Response {
    if (!res.ok) {
      void res.body?.cancel()
      throw new UpstreamError(`the upstream Glance answered ${res.status} ${res.statusText}`)
    }
    return res
  }
}
