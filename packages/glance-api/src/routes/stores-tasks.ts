import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TaskRecord } from '@peerglance/interface'
import type { GlanceApiComponents } from '../components.ts'
import { resource } from '../resource.ts'

/** Stores are sites (glance/api/v2/discovery.py, images.py delete_from_store). */
export function storeRoutes (app: FastifyInstance, { stores }: GlanceApiComponents): void {
  resource(app, '/v2/info/stores', { GET: async () => stores.list() })
  resource(app, '/v2/info/stores/detail', { GET: async (request) => stores.detail(request.identity) })
  resource(app, '/v2/stores/:site/:id', {
    DELETE: async (request: FastifyRequest<{ Params: { site: string, id: string } }>, reply) => {
      await stores.deleteFrom(request.identity, request.params.site, request.params.id)
      return reply.code(204).send()
    }
  })
}

/** The tasks API (glance/api/v2/tasks.py): the import tasks, read-only here. */
export function taskRoutes (app: FastifyInstance, { tasks }: GlanceApiComponents): void {
  resource(app, '/v2/tasks', {
    GET: async (request) => {
      const page = tasks.list(request.identity, request.query as Record<string, unknown>)
      const query = new URLSearchParams(request.query as Record<string, string>)
      const body: Record<string, unknown> = { tasks: page.tasks.map(taskStub), first: '/v2/tasks', schema: '/v2/schemas/tasks' }
      if (page.nextMarker != null) {
        query.set('marker', page.nextMarker)
        body.next = `/v2/tasks?${query.toString()}`
      }
      return body
    }
  })
  resource(app, '/v2/tasks/:taskId', {
    GET: async (request: FastifyRequest<{ Params: { taskId: string } }>) => {
      const task = tasks.get(request.identity, request.params.taskId)
      return { ...taskStub(task), input: task.input, result: task.result, message: task.message }
    }
  })
}

/** A task as the tasks API lists it: no input, result or message (tasks.py ResponseSerializer). */
function taskStub (task: TaskRecord): Record<string, unknown> {
  return {
    id: task.id,
    type: task.type,
    status: task.status,
    owner: task.owner,
    expires_at: task.expires_at,
    created_at: task.created_at,
    updated_at: task.updated_at,
    image_id: task.image_id,
    request_id: task.request_id,
    user_id: task.user_id,
    self: `/v2/tasks/${task.id}`,
    schema: '/v2/schemas/task'
  }
}
