import type { FastifyInstance, FastifyRequest } from 'fastify'
import { PATCH_MEDIA_TYPES, imageView, taskView } from '@peerglance/glance-domain'
import type { GlanceApiComponents } from '../components.ts'
import { resource } from '../resource.ts'
import { mediaType, readJson } from '../body.ts'
import { HttpError } from '../errors.ts'

type IdParams = { Params: { id: string } }
type TagParams = { Params: { id: string, tag: string } }
type Query = Record<string, string | string[] | undefined>

/** Image records: create, list, show, update, delete, actions, tags (glance/api/v2/images.py). */
export function imageRoutes (app: FastifyInstance, { images, imports }: GlanceApiComponents): void {
  resource(app, '/v2/images', {
    POST: async (request, reply) => {
      const image = await images.create(request.identity, await readJson(request))
      const origin = `${request.protocol}://${request.headers.host ?? request.host}`
      return reply.code(201)
        .header('location', `${origin}/v2/images/${image.id}`)
        .header('openstack-image-import-methods', images.rules.enabledImportMethods.join(','))
        .send(imageView(image))
    },
    GET: async (request) => {
      const query = request.query as Query
      const page = images.list(request.identity, query)
      const body: Record<string, unknown> = {
        images: page.images.map(imageView),
        first: pageLink(query, undefined),
        schema: '/v2/schemas/images'
      }
      if (page.nextMarker != null) body.next = pageLink(query, page.nextMarker)
      return body
    }
  })

  resource(app, '/v2/images/:id', {
    GET: async (request: FastifyRequest<IdParams>) => imageView(images.get(request.identity, request.params.id)),
    PATCH: async (request: FastifyRequest<IdParams>) => {
      const dialect = PATCH_MEDIA_TYPES[mediaType(request) ?? '']
      if (dialect == null) {
        throw new HttpError(415, `The request media type ${mediaType(request) ?? 'None'} is not supported by this server.`, {
          'accept-patch': Object.keys(PATCH_MEDIA_TYPES).join(', ')
        })
      }
      return imageView(await images.update(request.identity, request.params.id, await readJson(request), dialect))
    },
    DELETE: async (request: FastifyRequest<IdParams>, reply) => {
      await images.delete(request.identity, request.params.id)
      return reply.code(204).send()
    }
  })

  for (const action of ['deactivate', 'reactivate'] as const) {
    resource(app, `/v2/images/:id/actions/${action}`, {
      POST: async (request: FastifyRequest<IdParams>, reply) => {
        if (await readJson(request) !== undefined) throw new HttpError(400, 'A body is not expected with this request.')
        await images[action](request.identity, request.params.id)
        return reply.code(204).send()
      }
    })
  }

  resource(app, '/v2/images/:id/tags/:tag', {
    PUT: async (request: FastifyRequest<TagParams>, reply) => {
      await images.addTag(request.identity, request.params.id, request.params.tag)
      return reply.code(204).send()
    },
    DELETE: async (request: FastifyRequest<TagParams>, reply) => {
      await images.deleteTag(request.identity, request.params.id, request.params.tag)
      return reply.code(204).send()
    }
  })

  resource(app, '/v2/images/:id/tasks', {
    GET: async (request: FastifyRequest<IdParams>) => ({ tasks: imports.tasksOf(request.identity, request.params.id).map(taskView) })
  })
}

/**
 * `first`/`next` links, rebuilt as Glance does from a plain dict of the query: a repeated
 * parameter keeps only its last value (glance-api.md §5.3).
 */
function pageLink (query: Query, marker: string | undefined): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (key === 'marker' || value == null) continue
    params.set(key, Array.isArray(value) ? value[value.length - 1] : value)
  }
  if (marker != null) params.set('marker', marker)
  const qs = params.toString()
  return qs === '' ? '/v2/images' : `/v2/images?${qs}`
}
