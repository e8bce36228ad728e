import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { GlanceApiComponents } from '../components.ts'
import { resource } from '../resource.ts'
import { readJson } from '../body.ts'

type Query = Record<string, string | string[] | undefined>
type Ns = FastifyRequest<{ Params: { ns: string }, Querystring: Query }>
type Named = FastifyRequest<{ Params: { ns: string, name: string }, Querystring: Query }>

const NS = '/v2/metadefs/namespaces/:ns'
const CHILD_PATHS = { objects: 'object', properties: 'property' } as const

/** Metadata definitions (glance/api/v2/metadef_*.py): namespaces and what they hold. */
export function metadefRoutes (app: FastifyInstance, { metadefs }: GlanceApiComponents): void {
  resource(app, '/v2/metadefs/namespaces', {
    GET: async (request: FastifyRequest<{ Querystring: Query }>) => metadefs.listNamespaces(request.identity, request.query),
    POST: async (request, reply) => {
      const created = await metadefs.createNamespace(request.identity, await readJson(request))
      const origin = `${request.protocol}://${request.headers.host ?? request.host}`
      return reply.code(201).header('location', `${origin}${String(created.self)}`).send(created)
    }
  })

  resource(app, NS, {
    GET: async (request: Ns) => metadefs.getNamespace(request.identity, request.params.ns, request.query),
    PUT: async (request: Ns) => await metadefs.updateNamespace(request.identity, request.params.ns, await readJson(request)),
    DELETE: async (request: Ns, reply) => {
      await metadefs.deleteNamespace(request.identity, request.params.ns)
      return reply.code(204).send()
    }
  })

  for (const [path, type] of Object.entries(CHILD_PATHS)) {
    resource(app, `${NS}/${path}`, {
      GET: async (request: Ns) => metadefs.listChildren(request.identity, request.params.ns, type, request.query),
      POST: async (request: Ns, reply) => reply.code(201).send(await metadefs.createChild(request.identity, request.params.ns, type, await readJson(request))),
      DELETE: async (request: Ns, reply) => {
        await metadefs.deleteNamespaceContent(request.identity, request.params.ns, type)
        return reply.code(204).send()
      }
    })
    resource(app, `${NS}/${path}/:name`, {
      GET: async (request: Named) => metadefs.getChild(request.identity, request.params.ns, type, request.params.name, request.query),
      PUT: async (request: Named) => await metadefs.updateChild(request.identity, request.params.ns, type, request.params.name, await readJson(request)),
      DELETE: async (request: Named, reply) => {
        await metadefs.deleteChild(request.identity, request.params.ns, type, request.params.name)
        return reply.code(204).send()
      }
    })
  }

  resource(app, `${NS}/tags`, {
    GET: async (request: Ns) => metadefs.listChildren(request.identity, request.params.ns, 'tag', request.query),
    POST: async (request: Ns, reply) => {
      const append = /^(1|t|true|on|y|yes)$/i.test(String(request.headers['x-openstack-append'] ?? ''))
      return reply.code(201).send(await metadefs.createTags(request.identity, request.params.ns, await readJson(request), append))
    },
    DELETE: async (request: Ns, reply) => {
      await metadefs.deleteNamespaceContent(request.identity, request.params.ns, 'tag')
      return reply.code(204).send()
    }
  })
  resource(app, `${NS}/tags/:name`, {
    GET: async (request: Named) => metadefs.getChild(request.identity, request.params.ns, 'tag', request.params.name),
    POST: async (request: Named, reply) => reply.code(201).send(await metadefs.createTag(request.identity, request.params.ns, request.params.name)),
    PUT: async (request: Named) => await metadefs.updateChild(request.identity, request.params.ns, 'tag', request.params.name, await readJson(request)),
    DELETE: async (request: Named, reply) => {
      await metadefs.deleteChild(request.identity, request.params.ns, 'tag', request.params.name)
      return reply.code(204).send()
    }
  })

  resource(app, '/v2/metadefs/resource_types', {
    GET: async (request) => metadefs.listResourceTypes(request.identity)
  })
  resource(app, `${NS}/resource_types`, {
    GET: async (request: Ns) => metadefs.listAssociations(request.identity, request.params.ns),
    POST: async (request: Ns, reply) => reply.code(201).send(await metadefs.createAssociation(request.identity, request.params.ns, await readJson(request)))
  })
  resource(app, `${NS}/resource_types/:name`, {
    DELETE: async (request: Named, reply) => {
      await metadefs.deleteAssociation(request.identity, request.params.ns, request.params.name)
      return reply.code(204).send()
    }
  })
}
