import { randomUUID } from 'node:crypto'
import Fastify, { LogController } from 'fastify'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Identity } from '@peerglance/interface'
import type { GlanceRules } from '@peerglance/glance-domain'
import { auditTrail } from './audit.ts'
import type { GlanceApiComponents } from './components.ts'
import { answerMalformedRequest, HttpError, sendError, statusOf } from './errors.ts'
import { resource } from './resource.ts'
import { negotiateUrl, versionsDocument } from './versions.ts'
import { imageRoutes } from './routes/images.ts'
import { imageDataRoutes } from './routes/image-data.ts'
import { memberRoutes } from './routes/members.ts'
import { infoRoutes } from './routes/info.ts'
import { cacheRoutes } from './routes/cache.ts'
import { metadefRoutes } from './routes/metadefs.ts'
import { storeRoutes, taskRoutes } from './routes/stores-tasks.ts'

export type { GlanceApiComponents } from './components.ts'

declare module 'fastify' {
  interface FastifyRequest {
    identity: Identity
  }
}

export interface GlanceApiInit {
  rules: GlanceRules
  /** What version discovery advertises; null means "the URL the client used". */
  publicEndpoint?: string | null
  /** 0 disables it: uploads of big images take as long as they take. */
  requestTimeoutMs?: number
  /** PEM certificate chain and key: serve HTTPS. */
  https?: { cert: Buffer, key: Buffer }
}

const BODY_FORBIDDEN = new Set(['GET', 'DELETE', 'HEAD'])
// Version discovery and /healthcheck answer anyone, as in Glance; the agent's own ops routes do not.
// The dashboard page itself holds no data (it fetches status and metrics with the admin's token).
const AUTHENTICATED = /^\/(v2\/|peerglance\/(?!v1\/dashboard(\?|$))|metrics(\?|$))/
const MAX_REQUEST_ID = 64
/** Node refuses request heads over 16 KiB; no path parameter can be longer than that anyway. */
const MAX_PARAM_LENGTH = 16 * 1024

/**
 * The Glance v2 API as a fastify app, not yet listening. Bodies are left as raw streams (one
 * catch-all parser): uploads stream through unbuffered and JSON routes parse with Glance's errors.
 */
export function buildGlanceApi (components: GlanceApiComponents, init: GlanceApiInit): FastifyInstance {
  const app = Fastify({
    ...(init.https == null ? {} : { https: init.https }),
    loggerInstance: components.logger,
    logController: new LogController({ disableRequestLogging: true }),
    exposeHeadRoutes: false,
    return503OnClosing: true,
    requestTimeout: init.requestTimeoutMs ?? 0,
    forceCloseConnections: 'idle',
    // Any id reaches its route and gets Glance's 404; a URL the router cannot decode gets Glance's 400.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors: (err, request, reply) => sendError(request, reply, statusOf(err), err.message),
    clientErrorHandler: answerMalformedRequest,
    rewriteUrl: req => negotiateUrl(originForm(req.url ?? '/')),
    genReqId: req => {
      const given = req.headers['x-openstack-request-id']
      return typeof given === 'string' && given !== '' ? given : `req-${randomUUID()}`
    }
  })
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
  app.decorateRequest('identity', null as unknown as Identity)

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-openstack-request-id', request.id)
    if (request.id.length > MAX_REQUEST_ID) throw new HttpError(431, 'x-openstack-request-id is too long, max size 64')
    if (BODY_FORBIDDEN.has(request.method) && hasBody(request)) throw new HttpError(400, 'A body is not expected with this request.')
    if (AUTHENTICATED.test(request.url)) {
      try {
        request.identity = await components.authenticator.authenticate(request.headers, { signal: request.signal })
      } catch (err) {
        const challenge = components.authenticator.challenge
        if ((err as Error).name === 'NotAuthenticatedError' && challenge != null) reply.header('www-authenticate', challenge)
        throw err
      }
    }
  })

  if (components.audit != null) auditTrail(app, components.audit)

  // Glance sends `application/json` without a charset parameter.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.getHeader('content-type') === 'application/json; charset=utf-8') reply.header('content-type', 'application/json')
    return payload
  })

  app.setErrorHandler(async (err: Error & { statusCode?: number, code?: string }, request, reply) => {
    const status = statusOf(err)
    if (err instanceof HttpError) reply.headers(err.headers)
    if (status >= 500) {
      request.log.error({ err }, 'request failed')
      if (status === 500) return sendError(request, reply, 500, 'The server has either erred or is incapable of performing the requested operation.')
    } else {
      // A 404 is mostly a client probing (`openstack image show NAME` tries the name as an id
      // first): debug, so the info log stays about what happened to images.
      request.log[status === 404 ? 'debug' : 'info']({ errName: err.name, status, reason: err.message }, 'request refused')
    }
    return sendError(request, reply, status, err.message, err instanceof HttpError ? err.body : undefined)
  })

  // Glance answers any path outside /v2 with the versions document and 300 (version negotiation).
  app.setNotFoundHandler(async (request, reply) => {
    if (!/^\/v2(\/|$|\?)/.test(request.url)) {
      return reply.code(300).send(versionsDocument(versionHref(request, init.publicEndpoint)))
    }
    return sendError(request, reply, 404, 'The resource could not be found.')
  })

  resource(app, '/versions', { GET: async request => versionsDocument(versionHref(request, init.publicEndpoint)) })
  resource(app, '/', { GET: async (request, reply) => reply.code(300).send(versionsDocument(versionHref(request, init.publicEndpoint))) })
  resource(app, '/healthcheck', { GET: async (_request, reply) => reply.type('text/plain').send('OK') })
  imageRoutes(app, components)
  imageDataRoutes(app, components)
  memberRoutes(app, components)
  infoRoutes(app, components, init.rules)
  cacheRoutes(app, components)
  metadefRoutes(app, components)
  storeRoutes(app, components)
  taskRoutes(app, components)
  return app
}

/**
 * A server must accept a request target in absolute form (`GET http://host/v2/images`, RFC 9112
 * §3.2.2), as proxies send it; only its path and query matter for routing.
 */
function originForm (url: string): string {
  if (url.startsWith('/') || !URL.canParse(url)) return url
  const { protocol, pathname, search } = new URL(url)
  return protocol === 'http:' || protocol === 'https:' ? `${pathname}${search}` : url
}

function hasBody (request: FastifyRequest): boolean {
  const length = Number(request.headers['content-length'] ?? 0)
  return length > 0 || request.headers['transfer-encoding'] != null
}

function versionHref (request: FastifyRequest, publicEndpoint: string | null | undefined): string {
  const base = publicEndpoint ?? `${request.protocol}://${request.headers.host ?? request.host}`
  return `${base.replace(/\/+$/, '')}/v2/`
}
