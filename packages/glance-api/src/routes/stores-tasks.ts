import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TaskRecord } from '@peerglance/interface'
import type { GlanceApiComponents } from '../components.ts'
import { resource } from '../resource.ts'
import { readJson } from '../body.ts'
import { HttpError } from '../errors.ts'

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

/** The tasks API (glance/api/v2/tasks.py): the import tasks, and the old `import` task's create. */
export function taskRoutes (app: FastifyInstance, { tasks }: GlanceApiComponents): void {
  resource(app, '/v2/tasks', {
    GET: async (request) => {
      const params = request.query as Record<string, string>
      const page = tasks.list(request.identity, params)
      const query = new URLSearchParams(params)
      query.delete('marker')
      const body: Record<string, unknown> = { tasks: page.tasks.map(taskStub), first: query.size > 0 ? `/v2/tasks?${query.toString()}` : '/v2/tasks', schema: '/v2/schemas/tasks' }
      if (page.nextMarker != null) {
        query.set('marker', page.nextMarker)
        body.next = `/v2/tasks?${query.toString()}`
      }
      return body
    },
    POST: async (request, reply) => {
      const task = await tasks.create(request.identity, await readJson(request), { requestId: request.id })
      const origin = `${request.protocol}://${request.headers.host ?? request.host}`
      return reply.code(201).header('location', `${origin}/v2/tasks/${task.id}`).send(taskFull(task))
    }
  })
  resource(app, '/v2/tasks/:taskId', {
    GET: async (request: FastifyRequest<{ Params: { taskId: string } }>) => taskFull(tasks.get(request.identity, request.params.taskId)),
    DELETE: async (request) => {
      tasks.enforceAccess(request.identity)
      const explanation = 'This operation is currently not permitted on Glance Tasks. They are auto deleted after reaching the time based on their expires_at property.'
      // tasks.py renders it with body_template='${explanation}': nothing around it.
      throw new HttpError(405, explanation, { allow: 'GET' }, explanation)
    }
  })
}

/** A task as the tasks API lists it (tasks.py _format_task_stub): no input, result or message, nor whom it concerns. */
function taskStub (task: TaskRecord): Record<string, unknown> {
  const stub: Record<string, unknown> = {
    id: task.id,
    type: task.type,
    status: task.status,
    owner: task.owner,
    created_at: task.created_at,
    updated_at: task.updated_at,
    self: `/v2/tasks/${task.id}`,
    schema: '/v2/schemas/task'
  }
  if (task.expires_at != null) stub.expires_at = task.expires_at
  return stub
}

/** A task as the tasks API shows one (tasks.py _format_task): the optional fields only when set. */
function taskFull (task: TaskRecord): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: task.id,
    input: task.input,
    type: task.type,
    status: task.status,
    owner: task.owner,
    message: task.message,
    result: task.result,
    created_at: task.created_at,
    updated_at: task.updated_at,
    self: `/v2/tasks/${task.id}`,
    schema: '/v2/schemas/task'
  }
  // Glance files a task under the image its input names; an import task's own image is in its result.
  if (typeof task.input.image_id === 'string') view.image_id = task.image_id
  if (task.request_id != null) view.request_id = task.request_id
  if (task.user_id != null) view.user_id = task.user_id
  if (task.expires_at != null) view.expires_at = task.expires_at
  return view
}
