import type { FastifyInstance, FastifyRequest } from 'fastify'
import { memberView } from '@peerglance/glance-domain'
import type { GlanceApiComponents } from '../components.ts'
import { resource } from '../resource.ts'
import { readJson } from '../body.ts'

type IdParams = { Params: { id: string } }
type MemberParams = { Params: { id: string, member: string } }

/** Sharing an image with other projects (glance/api/v2/image_members.py). */
export function memberRoutes (app: FastifyInstance, { members }: GlanceApiComponents): void {
  resource(app, '/v2/images/:id/members', {
    GET: async (request: FastifyRequest<IdParams>) => ({
      members: members.list(request.identity, request.params.id).map(memberView),
      schema: '/v2/schemas/members'
    }),
    // Glance answers 200, not 201, to a new member.
    POST: async (request: FastifyRequest<IdParams>) => memberView(await members.add(request.identity, request.params.id, await readJson(request)))
  })

  resource(app, '/v2/images/:id/members/:member', {
    GET: async (request: FastifyRequest<MemberParams>) => memberView(members.get(request.identity, request.params.id, request.params.member)),
    PUT: async (request: FastifyRequest<MemberParams>) => memberView(await members.update(request.identity, request.params.id, request.params.member, await readJson(request))),
    DELETE: async (request: FastifyRequest<MemberParams>, reply) => {
      await members.remove(request.identity, request.params.id, request.params.member)
      return reply.code(204).send()
    }
  })
}
