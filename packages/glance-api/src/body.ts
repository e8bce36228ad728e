import type { FastifyRequest } from 'fastify'
import { UnsupportedMediaTypeError, ValidationError } from '@peerglance/interface'
import { HttpError } from './errors.ts'

/** JSON request bodies are small; anything bigger is refused before it is buffered. */
const MAX_JSON_BYTES = 1024 * 1024
/** The deepest Glance body (an import with `method` and `stores`) is 3 levels. */
const MAX_JSON_DEPTH = 32

/** Reads and parses a JSON body with Glance's messages; an absent body is `undefined`. */
export async function readJson (request: FastifyRequest): Promise<unknown> {
  const stream = request.body as AsyncIterable<Buffer> | undefined
  if (stream == null) return undefined
  const parts: Buffer[] = []
  let size = 0
  for await (const part of stream) {
    size += part.length
    if (size > MAX_JSON_BYTES) throw new HttpError(413, 'Request body is too large.')
    parts.push(part)
  }
  if (size === 0) return undefined
  const text = Buffer.concat(parts).toString('utf8')
  // Parsing is safe at any depth, but every walk over the value afterwards (validation, copies,
  // serialisation for the store) recurses: refuse depth no Glance body has before it gets there.
  if (nestingDepth(text) > MAX_JSON_DEPTH) throw new ValidationError(`JSON body nested more than ${MAX_JSON_DEPTH} levels deep.`)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new ValidationError('Malformed JSON in request body.')
  }
  if (value == null || typeof value !== 'object') throw new ValidationError('Unexpected body type. Expected list/dict.')
  return value
}

/** The upload body as a stream; Glance requires `application/octet-stream` (parameters ignored). */
export function octetStream (request: FastifyRequest): AsyncIterable<Uint8Array> {
  const type = mediaType(request)
  if (type !== 'application/octet-stream') {
    throw new UnsupportedMediaTypeError(`The request media type ${type ?? 'None'} is not supported by this server.`)
  }
  return (request.body as AsyncIterable<Uint8Array> | undefined) ?? emptyBody()
}

export function mediaType (request: FastifyRequest): string | undefined {
  return request.headers['content-type']?.split(';')[0].trim().toLowerCase()
}

/** `x-openstack-image-size`, else Content-Length; unknown for chunked uploads. */
export function expectedSize (request: FastifyRequest): number | undefined {
  const header = request.headers['x-openstack-image-size']
  if (typeof header === 'string' && header !== '') {
    if (!/^\d+$/.test(header.trim())) throw new ValidationError(`x-openstack-image-size header must be an integer: ${header}`)
    return Number(header)
  }
  const length = request.headers['content-length']
  return length == null ? undefined : Number(length)
}

/** The deepest bracket nesting in JSON text, brackets inside strings not counted. */
function nestingDepth (text: string): number {
  let depth = 0
  let max = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // a backslash escapes the next character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return max
}

async function * emptyBody (): AsyncIterable<Uint8Array> {}
