import { Transform, pipeline } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

/** One image action, as the audit trail records it. Never a token. */
export interface AuditRecord {
  time: string
  requestId: string
  userId: string | null
  projectId: string | null
  imageId: string | null
  action: string
  /** success (2xx), refused (403: the policy said no), unauthenticated (401), failure (anything else). */
  outcome: 'success' | 'refused' | 'unauthenticated' | 'failure'
  status: number
  /** Image bytes received (upload, stage) or sent (download); 0 for the rest. */
  bytes: number
  remoteAddress: string
  memberId?: string
}

export interface AuditSink {
  write: (record: AuditRecord) => void
}

type Route = `${string} ${string}`

// The image actions worth a line, by method and route (reads of metadata are not audited).
const ACTIONS: Record<Route, string> = {
  'POST /v2/images': 'create',
  'PATCH /v2/images/:id': 'update',
  'DELETE /v2/images/:id': 'delete',
  'PUT /v2/images/:id/file': 'upload',
  'GET /v2/images/:id/file': 'download',
  'PUT /v2/images/:id/stage': 'stage',
  'POST /v2/images/:id/import': 'import',
  'POST /v2/images/:id/actions/deactivate': 'deactivate',
  'POST /v2/images/:id/actions/reactivate': 'reactivate',
  'PUT /v2/images/:id/tags/:tag': 'tag-add',
  'DELETE /v2/images/:id/tags/:tag': 'tag-remove',
  'POST /v2/images/:id/members': 'member-add',
  'PUT /v2/images/:id/members/:member': 'member-update',
  'DELETE /v2/images/:id/members/:member': 'member-remove'
}

const UPLOADS = new Set(['upload', 'stage'])

interface Tally { bytes: number, socketWritten: number }

/**
 * Writes one audit record per image action when its response ends (or the client goes away):
 * every action in ACTIONS whatever its outcome, and any other `/v2/` request the policy refused
 * (403). Upload bytes are counted as the body streams through; download bytes are what reached
 * the socket.
 */
export function auditTrail (app: FastifyInstance, sink: AuditSink): void {
  const tallies = new WeakMap<FastifyRequest, Tally>()

  app.addHook('onRequest', async (request, reply) => {
    tallies.set(request, { bytes: 0, socketWritten: reply.raw.socket?.bytesWritten ?? 0 })
  })

  app.addHook('preParsing', async (request, _reply, payload) => {
    const tally = tallies.get(request)
    if (tally == null || !UPLOADS.has(actionOf(request) ?? '')) return payload
    const counted = new Transform({
      transform (chunk: Buffer, _encoding, done) {
        tally.bytes += chunk.byteLength
        done(null, chunk)
      }
    })
    pipeline(payload, counted, () => {})
    return counted
  })

  app.addHook('onResponse', async (request, reply) => {
    const tally = tallies.get(request)
    const action = actionOf(request)
    const status = reply.statusCode
    if (action == null && !(status === 403 && request.url.startsWith('/v2/'))) return
    sink.write({
      time: new Date().toISOString(),
      requestId: request.id,
      userId: request.identity?.userId ?? null,
      projectId: request.identity?.projectId ?? null,
      imageId: imageIdOf(request, reply),
      action: action ?? `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`,
      outcome: status === 401 ? 'unauthenticated' : status === 403 ? 'refused' : status >= 200 && status < 300 ? 'success' : 'failure',
      status,
      bytes: action === 'download' ? downloaded(reply, tally) : tally?.bytes ?? 0,
      remoteAddress: request.ip,
      ...memberOf(request)
    })
  })
}

function actionOf (request: FastifyRequest): string | undefined {
  const url = request.routeOptions.url
  return url == null ? undefined : ACTIONS[`${request.method} ${url}`]
}

function imageIdOf (request: FastifyRequest, reply: FastifyReply): string | null {
  const id = (request.params as { id?: string } | undefined)?.id
  if (id != null) return id
  // A create names the new image only in its Location header.
  const location = reply.getHeader('location')
  return typeof location === 'string' ? location.split('/').at(-1) ?? null : null
}

function memberOf (request: FastifyRequest): { memberId?: string } {
  const member = (request.params as { member?: string } | undefined)?.member
  return member == null ? {} : { memberId: member }
}

/**
 * Body bytes of a download: its Content-Length once it completed, else what reached the socket
 * minus the response head.
 */
function downloaded (reply: FastifyReply, tally: Tally | undefined): number {
  const length = Number(reply.getHeader('content-length') ?? 0)
  if (reply.raw.writableFinished) return length
  const written = (reply.raw.socket?.bytesWritten ?? 0) - (tally?.socketWritten ?? 0)
  const head = (reply.raw as unknown as { _header?: string })._header?.length ?? 0
  return Math.max(0, Math.min(length, written - head))
}
