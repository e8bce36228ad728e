import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ValidationError } from '@peerglance/interface'
import type { CacheClearTarget } from '@peerglance/interface'
import type { GlanceApiComponents } from '../components.ts'
import { resource } from '../resource.ts'

type IdParams = { Params: { id: string } }

/** `x-image-cache-clear-target` (glance cached_images.py clear_cache): empty clears both. */
const CLEAR_TARGETS: Record<string, CacheClearTarget> = { '': 'all', cache: 'cache', queue: 'queue' }

/** The image cache API (glance/api/v2/cached_images.py, API 2.14–2.16). */
export function cacheRoutes (app: FastifyInstance, { cache }: GlanceApiComponents): void {
  resource(app, '/v2/cache', {
    GET: async (request) => await cache.list(request.identity),
    DELETE: async (request, reply) => {
      const header = String(request.headers['x-image-cache-clear-target'] ?? '').trim().toLowerCase()
      const target = Object.hasOwn(CLEAR_TARGETS, header) ? CLEAR_TARGETS[header] : undefined
      if (target == null) throw new ValidationError(`If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string.`)
      await cache.clear(request.identity, target)
      return reply.code(204).send()
    }
  })

  resource(app, '/v2/cache/:id', {
    // 202 since API 2.16: the image is fetched in the background.
    PUT: async (request: FastifyRequest<IdParams>, reply) => {
      cache.queue(request.identity, request.params.id)
      return reply.code(202).send()
    },
    DELETE: async (request: FastifyRequest<IdParams>, reply) => {
      await cache.remove(request.identity, request.params.id)
      return reply.code(204).send()
    }
  })
}
