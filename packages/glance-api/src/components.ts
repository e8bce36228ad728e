import type { FastifyBaseLogger } from 'fastify'
import type { Authenticator } from '@peerglance/interface'
import type { CacheService, ImageDataService, ImageService, MemberService, MetadefService } from '@peerglance/glance-domain'
import type { AuditSink } from './audit.ts'

/** What the Glance API is built from; route modules take the parts they use. */
export interface GlanceApiComponents {
  images: ImageService
  data: ImageDataService
  members: MemberService
  cache: CacheService
  metadefs: MetadefService
  authenticator: Authenticator
  logger: FastifyBaseLogger
  /** Where image actions are recorded; none: no audit trail. */
  audit?: AuditSink
}
