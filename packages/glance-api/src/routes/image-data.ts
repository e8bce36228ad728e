import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Readable } from 'node:stream'
import { AbortedError } from '@peerglance/interface'
import type { GlanceApiComponents } from '../app.ts'
import { resource } from '../app.ts'
import { expectedSize, octetStream, readJson } from '../body.ts'
import { HttpError } from '../errors.ts'
import { parseRange } from '../range.ts'

type IdParams = { Params: { id: string } }

/** Measured: node streams serve at nginx parity with 1 MiB buffers, at ~0.75 with the 64 KiB default. */
const STREAM_HIGH_WATER_MARK = 1024 * 1024

/** Upload, stage, import and download (glance/api/v2/image_data.py). */
export function imageDataRoutes (app: FastifyInstance, { data }: GlanceApiComponents): void {
  resource(app, '/v2/images/:id/file', {
    PUT: async (request: FastifyRequest<IdParams>, reply) => {
      checkStore(request)
      await data.upload(request.identity, request.params.id, octetStream(request), uploadOptions(request))
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
      checkStore(request)
      await data.import(request.identity, request.params.id, await readJson(request), { requestId: request.id })
      return reply.code(202).send()
    }
  })
}

async function download (request: FastifyRequest<IdParams>, reply: FastifyReply, data: GlanceApiComponents['data']): Promise<FastifyReply> {
  if ((request.query as Record<string, unknown>).prefer != null) throw new HttpError(400, 'The prefer parameter is only supported in multi-store deployments.')
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
  const body = Readable.from(data.read(image.id, manifest, start, end, signal), { objectMode: false, highWaterMark: STREAM_HIGH_WATER_MARK })
  return reply.send(body)
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

/** The single store is called `peerglance`; naming another is a 400, as Glance does for unknown stores. */
function checkStore (request: FastifyRequest): void {
  const store = header(request, 'x-image-meta-store')
  if (store != null && store !== 'peerglance') throw new HttpError(400, `Store for identifier ${store} not found`)
}

function header (request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name]
  return Array.isArray(v) ? v[0] : v
}
