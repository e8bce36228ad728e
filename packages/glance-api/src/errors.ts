import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'

/** The one map from domain error names to HTTP statuses (glance/api/v2/image_data.py and friends). */
const STATUS_BY_NAME: Record<string, number> = {
  ImageNotFoundError: 404,
  MemberNotFoundError: 404,
  NotFoundError: 404,
  ForbiddenError: 403,
  ReadOnlyPropertyError: 403,
  ReservedPropertyError: 403,
  ImageProtectedError: 403,
  InvalidStatusTransitionError: 409,
  ConflictError: 409,
  ImageGoneError: 410,
  ValidationError: 400,
  LimitExceededError: 413,
  ImageTooLargeError: 413,
  StorageFullError: 413,
  UnsupportedMediaTypeError: 415,
  InvalidImageDataError: 415,
  RangeNotSatisfiableError: 416,
  NotAuthenticatedError: 401,
  AuthUnavailableError: 503,
  ChunkUnavailableError: 503,
  ShuttingDownError: 503
}

/** Fastify's own errors that reach us, by code. */
const STATUS_BY_FASTIFY_CODE: Record<string, number> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 413,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 415,
  FST_ERR_CTP_EMPTY_JSON_BODY: 400,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 400,
  FST_ERR_VALIDATION: 400,
  FST_ERR_BAD_URL: 400,
  FST_ERR_MAX_PARAM_LENGTH: 414
}

/** WebOb's reason phrases where they differ from node's (webob/exc.py). */
const WEBOB_TITLES: Record<number, string> = {
  413: 'Request Entity Too Large',
  416: 'Request Range Not Satisfiable',
  431: 'Request Header Fields Too Large'
}

/** An HTTP-level error raised by the API layer itself (bad header, wrong method, ...). */
export class HttpError extends Error {
  readonly statusCode: number
  readonly headers: Record<string, string>
  /** WebOb's rendered body when the error has a template of its own (see sendError). */
  readonly body: string | undefined
  constructor (statusCode: number, message: string, headers: Record<string, string> = {}, body?: string) {
    super(message)
    this.name = 'HttpError'
    this.statusCode = statusCode
    this.headers = headers
    this.body = body
  }
}

export function statusOf (err: Error & { statusCode?: number, code?: string }): number {
  if (err instanceof HttpError) return err.statusCode
  return STATUS_BY_NAME[err.name] ?? STATUS_BY_FASTIFY_CODE[err.code ?? ''] ?? 500
}

/**
 * Renders an error as Glance's WebOb does (glance-api.md §21): HTML when the client accepts
 * anything or HTML (glanceclient and the SDK send `*\/*` and parse HTML), flat JSON only when JSON
 * is asked for, plain text otherwise.
 */
export function sendError (request: FastifyRequest, reply: FastifyReply, status: number, message: string, body?: string): FastifyReply {
  const title = titleOf(status)
  const line = `${status} ${title}`
  const accept = String(request.headers.accept ?? '').toLowerCase()
  if (status === 503) reply.header('retry-after', '1')
  reply.code(status)
  // `body` is WebOb's own rendering for errors with a template of their own (405's "The method X
  // is not allowed for this resource. <br /><br />\n", or a bare explanation): made by us, never
  // from the request, so it goes into HTML as it is; plain text gets it with WebOb's strip_tags.
  if (/application\/json/.test(accept) && !/text\/html/.test(accept)) {
    return reply.type('application/json').send(jsonError(status, message, body))
  }
  if (/text\/html|\*\/\*|text\/\*/.test(accept)) {
    return reply.type('text/html; charset=UTF-8').send(`<html>\n <head>\n  <title>${line}</title>\n </head>\n <body>\n  <h1>${line}</h1>\n  ${body ?? `${escapeHtml(message)}<br /><br />\n\n\n`}\n </body>\n</html>`)
  }
  return reply.type('text/plain; charset=UTF-8').send(`${line}\n\n${body == null ? `${message}\n\n   ` : stripTags(body)}`)
}

/** WebOb's reason phrase for `status`. */
function titleOf (status: number): string {
  return WEBOB_TITLES[status] ?? STATUS_CODES[status] ?? 'Error'
}

/** Glance's JSON error body: WebOb's message (or its own rendering, `body`), status line and title. */
function jsonError (status: number, message: string, body?: string): string {
  const title = titleOf(status)
  return JSON.stringify({ message: body ?? `${message}<br /><br />\n\n\n`, code: `${status} ${title}`, title })
}

/** webob/exc.py strip_tags: newlines become spaces, `<br>` a newline, other tags go. */
function stripTags (html: string): string {
  return html.replaceAll('\n', ' ').replaceAll('\r', '').replace(/<br.*?>/gis, '\n').replace(/<!--.*?-->/gs, '').replace(/<[^>]*>/gs, '')
}

function escapeHtml (s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
}

/**
 * A request Node's HTTP parser refused (bad Content-Length, chunked and Content-Length together,
 * header overflow): answered in Glance's JSON shape on the raw socket, since no request exists.
 */
export function answerMalformedRequest (err: Error & { code?: string, reason?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
  const title = titleOf(status)
  const body = jsonError(status, status === 400 ? `Malformed request: ${err.reason ?? err.message}` : title)
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${title}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}
