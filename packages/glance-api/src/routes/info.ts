import type { FastifyInstance, FastifyRequest } from 'fastify'
import { schemaDocuments } from '@peerglance/glance-domain'
import type { GlanceRules } from '@peerglance/glance-domain'
import type { GlanceApiComponents } from '../components.ts'
import { resource } from '../resource.ts'

const MIB = 1024 * 1024

/** Discovery documents: `/v2/info/*` and `/v2/schemas/*`. */
export function infoRoutes (app: FastifyInstance, { images }: GlanceApiComponents, rules: GlanceRules): void {
  resource(app, '/v2/info/import', {
    GET: async () => ({ 'import-methods': { description: 'Import methods available.', type: 'array', value: rules.enabledImportMethods } })
  })

  // The shape Glance gives with keystone limits on; -1 marks limits this agent does not enforce.
  resource(app, '/v2/info/usage', {
    GET: async (request) => {
      const usage = images.usage(request.identity.projectId)
      return {
        usage: {
          image_size_total: { limit: rules.userStorageQuota > 0 ? Math.floor(rules.userStorageQuota / MIB) : -1, usage: Math.ceil(usage.bytes / MIB) },
          image_count_total: { limit: -1, usage: usage.images },
          image_stage_total: { limit: -1, usage: 0 },
          image_count_uploading: { limit: -1, usage: usage.uploading }
        }
      }
    }
  })

  for (const [name, doc] of schemaDocuments(rules)) {
    resource(app, `/v2/schemas/${name}`, { GET: async (_request: FastifyRequest) => doc })
  }
}
