import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { HttpError } from './errors.ts'

// Handlers declare their own params type; fastify checks none of it at runtime anyway.
type Handler = (request: FastifyRequest<any>, reply: FastifyReply) => Promise<unknown>
export type Methods = Partial<Record<'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH', Handler>>

/** Registers a resource's handlers; any other method on the same path answers 405 with `Allow`. */
export function resource (app: FastifyInstance, url: string, methods: Methods): void {
  for (const [method, handler] of Object.entries(methods)) app.route({ method, url, handler: handler as Handler })
  const allow = Object.keys(methods).join(', ')
  const others = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'].filter(m => !(m in methods))
  app.route({
    method: others,
    url,
    handler: async (request) => {
      const message = `The method ${request.method} is not allowed for this resource.`
      // WebOb's HTTPMethodNotAllowed has a template of its own.
      throw new HttpError(405, message, { allow }, `${message} <br /><br />\n`)
    }
  })
}
