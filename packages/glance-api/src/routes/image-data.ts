import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AbortedError } from '@peerglance/interface'
import type { GlanceApiComponents } from '../components.ts'
import { resource } from '../resource.ts'
import { expectedSize, octetStream, readJson } from '../body.ts'
import { HttpError } from '../errors.ts'
import { parseRange } from '../range.ts'

type IdParams = { Params: { id: string } }

/** Upload, stage, import and download (glance/api/v2/image_data.py). */
export function imageDataRoutes (app: FastifyInstance, { data, imports, stores }: GlanceApiComponents): void {
  resource(app, '/v2/images/:id/file', {
    PUT: async (request: FastifyRequest<IdParams>, reply) => {
      checkStore(request, stores)
      const started = Date.now()
      const image = await data.upload(request.identity, request.params.id, octetStream(request), uploadOptions(request))
      request.log.info({ imageId: image.id, bytes: image.size, ms: Date.now() - started }, 'upload finished')
      return reply.code(204).send()
    },
    GET: async (request: FastifyRequest<IdParams>, reply) => await download(request, reply, data)
  })

  resource(app, '/v2/images/:id/stage', {
    PUT: async (request: FastifyRequest<IdParams>, reply) => {
      await data.stage(request.identity, request.params.id, octetStream(request), uploadOptions(request))
      return reply.code(204).send()
    }
  })

  resource(app, '/v2/images/:id/import', {
    POST: async (request: FastifyRequest<IdParams>, reply) => {
      checkStore(request, stores)
      await imports.import(request.identity, request.params.id, await readJson(request), { requestId: request.id, store: header(request, 'x-image-meta-store'), token: header(request, 'x-auth-token') })
      return reply.code(202).send()
    }
  })
}

async function download (request: FastifyRequest<IdParams>, reply: FastifyReply, data: GlanceApiComponents['data']): Promise<FastifyReply> {
  if ((request.query as Record<string, unknown>).prefer != null) throw new HttpError(400, 'The prefer parameter is only supported in multi-store deployments.')
  const started = Date.now()
  const signal = hangUpSignal(reply)
  const { image, manifest } = await data.download(request.identity, request.params.id, { signal })
  // Glance answers 204, not 404, when the image has no data yet (image_data.py download).
  if (manifest == null) return reply.code(204).send()
  const size = manifest.size
  const range = parseRange(header(request, 'range'), header(request, 'content-range'), size)
  const start = range?.start ?? 0
  const end = range?.end ?? size - 1
  reply.type('application/octet-stream').header('content-length', String(end - start + 1))
  if (image.checksum != null) reply.header('content-md5', image.checksum)
  if (range != null) reply.code(206).header('content-range', `bytes ${start}-${end}/${size}`)
  if (size === 0) return reply.send('')
  const parts = data.read(image.id, manifest, start, end, signal)[Symbol.asyncIterator]()
  // Read the first chunk before answering, so a chunk no peer has still becomes a clean 503.
  const first = await parts.next()
  reply.hijack()
  reply.raw.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders)
  await streamTo(reply.raw, first, parts, { log: request.log, imageId: image.id, signal, started })
  return reply
}

/**
 * Writes the parts straight to the socket, waiting for each write to complete before pulling the
 * next: the reader reuses its buffers, so nothing is copied and no garbage is made per chunk.
 * Once bytes went out, a failure can only cut the connection (the client sees a body shorter than
 * Content-Length, never wrong bytes), and fastify logs nothing of it with request logging off:
 * say here why the download stopped, e.g. no peer held a chunk.
 */
async function streamTo (res: ServerResponse, first: IteratorResult<Uint8Array>, parts: AsyncIterator<Uint8Array>, ctx: { log: FastifyBaseLogger, imageId: string, signal: AbortSignal, started: number }): Promise<void> {
  let sent = 0
  try {
    for (let part = first; part.done !== true; part = await parts.next()) {
      await new Promise<void>((resolve, reject) => {
        res.write(part.value, err => { err == null ? resolve() : reject(err) })
      })
      sent += part.value.byteLength
    }
    res.end()
    ctx.log.info({ imageId: ctx.imageId, bytes: sent, ms: Date.now() - ctx.started }, 'download finished')
  } catch (err) {
    await parts.return?.().catch(() => {})
    if (!ctx.signal.aborted) ctx.log.warn({ err, imageId: ctx.imageId, bytesSent: sent }, 'download cut off')
    res.destroy()
  }
}

function uploadOptions (request: FastifyRequest): { expectedSize?: number, signal: AbortSignal, requestId: string } {
  const signal = abortOnHangUp(request)
  return { expectedSize: expectedSize(request), signal, requestId: request.id }
}

/** Aborts peer fetches made for a download when the client goes away. */
function hangUpSignal (reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new AbortedError('client closed the connection'))
  })
  return controller.signal
}

/** Aborts when the client goes away before its body has fully arrived. */
function abortOnHangUp (request: FastifyRequest): AbortSignal {
  const controller = new AbortController()
  request.raw.once('close', () => {
    if (!request.raw.complete) controller.abort(new AbortedError('client closed the connection before the upload finished'))
  })
  return controller.signal
}

/** Stores are sites; naming one the mesh does not know is a 400, as Glance does for unknown stores. */
function checkStore (request: FastifyRequest, stores: GlanceApiComponents['stores']): void {
  const store = header(request, 'x-image-meta-store')
  if (store != null && !stores.list().stores.some(s => s.id === store)) throw new HttpError(400, `Store for identifier ${store} not found`)
}

function header (request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name]
  return Array.isArray(v) ? v[0] : v
}
