import type { FastifyBaseLogger } from 'fastify'
import type { Authenticator } from '@peerglance/interface'
import type { CacheService, ImageDataService, ImageService, ImportService, MemberService, MetadefService, StoreService, TaskService } from '@peerglance/glance-domain'
import type { AuditSink } from './audit.ts'

/** What the Glance API is built from; route modules take the parts they use. */
export interface GlanceApiComponents {
  images: ImageService
  data: ImageDataService
  members: MemberService
  cache: CacheService
  metadefs: MetadefService
  imports: ImportService
  stores: StoreService
  tasks: TaskService
  authenticator: Authenticator
  logger: FastifyBaseLogger
  /** Where image actions are recorded; none: no audit trail. */
  audit?: AuditSink
}
