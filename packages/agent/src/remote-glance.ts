import { catalogEndpoint } from '@peerglance/auth-keystone'
import type { CatalogEntry } from '@peerglance/auth-keystone'
import { NotFoundError, ValidationError } from '@peerglance/interface'
import type { AbortOptions, ExternalData, RemoteGlance, RemoteImageRef } from '@peerglance/interface'

const TIMEOUT_MS = 30_000

/**
 * glance-download's view of another Glance: its endpoint comes from the Keystone catalog the
 * caller's own token sees (as Glance reads `context.service_catalog`, glance/async_/utils.py
 * get_glance_endpoint), and every request carries that token. The catalog is the operator's, so
 * the endpoint is trusted as Glance trusts it; a request to the wrong region or interface fails
 * the task.
 */
export class KeystoneRemoteGlance implements RemoteGlance {
  readonly #keystone: string
  readonly #serviceType: string

  constructor (init: { keystoneUrl: string, serviceType: string }) {
    this.#keystone = init.keystoneUrl.replace(/\/+$/, '')
    this.#serviceType = init.serviceType
  }

  async image (ref: RemoteImageRef, opts: AbortOptions = {}): Promise<Record<string, unknown>> {
    const res = await this.#get(ref, `/v2/images/${encodeURIComponent(ref.imageId)}`, opts)
    return await res.json() as Record<string, unknown>
  }

  async data (ref: RemoteImageRef, opts: AbortOptions = {}): Promise<ExternalData> {
    const res = await this.#get(ref, `/v2/images/${encodeURIComponent(ref.imageId)}/file`, opts)
    const length = res.headers.get('content-length')
    const body = res.body as unknown as AsyncIterable<Uint8Array>
    return { body, ...(length != null && /^\d+$/.test(length) ? { size: Number(length) } : {}) }
  }

  async #get (ref: RemoteImageRef, path: string, opts: AbortOptions): Promise<Response> {
    const base = await this.#endpoint(ref, opts)
    // The time limit is for the answer to start: an image's bytes take as long as they take.
    const answered = new AbortController()
    const timer = setTimeout(() => { answered.abort(new Error(`Glance of region ${ref.region} did not answer within ${TIMEOUT_MS} ms`)) }, TIMEOUT_MS)
    let res: Response
    try {
      res = await fetch(`${base}${path}`, { headers: { 'x-auth-token': ref.token, accept: 'application/json' }, signal: opts.signal == null ? answered.signal : AbortSignal.any([opts.signal, answered.signal]) })
    } finally {
      clearTimeout(timer)
    }
    if (res.status !== 200) {
      await res.body?.cancel()
      throw new NotFoundError(`Glance of region ${ref.region} answered ${res.status} for image ${ref.imageId}`)
    }
    return res
  }

  async #endpoint (ref: RemoteImageRef, opts: AbortOptions): Promise<string> {
    const res = await fetch(`${this.#keystone}/auth/catalog`, { headers: { 'x-auth-token': ref.token, accept: 'application/json' }, signal: signalOf(opts) })
    if (res.status !== 200) {
      await res.body?.cancel()
      throw new ValidationError(`the identity service answered ${res.status} for the caller's catalog`)
    }
    const { catalog } = await res.json() as { catalog?: CatalogEntry[] }
    const url = catalogEndpoint(catalog ?? [], { type: this.#serviceType, region: ref.region, interfaces: [ref.interface] })
    // Glance appends /v2/...; an endpoint registered with its version is used as its root.
    if (url != null) return url.replace(/\/v2(\.\d+)?$/, '')
    throw new NotFoundError(`No ${this.#serviceType} endpoint for region ${ref.region} and interface ${ref.interface} in the catalog`)
  }
}

function signalOf (opts: AbortOptions): AbortSignal {
  return opts.signal == null ? AbortSignal.timeout(TIMEOUT_MS) : AbortSignal.any([opts.signal, AbortSignal.timeout(TIMEOUT_MS)])
}
