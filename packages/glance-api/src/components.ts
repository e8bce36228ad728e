import type { FastifyBaseLogger } from 'fastify'
import type { Authenticator } from '@peerglance/interface'
import type { CacheService, ImageDataService, ImageService, MemberService } from '@peerglance/glance-domain'

/** What the Glance API is built from; route modules take the parts they use. */
export interface GlanceApiComponents {
  images: ImageService
  data: ImageDataService
  members: MemberService
  cache: CacheService
  authenticator: Authenticator
  logger: FastifyBaseLogger
}
