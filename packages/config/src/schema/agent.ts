import { Type, type Static } from 'typebox'
import { ApiConfig } from './api.ts'
import { AuditConfig } from './audit.ts'
import { AuthConfig } from './auth.ts'
import { CacheConfig } from './cache.ts'
import { ChunksConfig } from './chunks.ts'
import { DataDirConfig } from './data-dir.ts'
import { GlanceConfig } from './glance.ts'
import { ImportConfig } from './import.ts'
import { LogConfig } from './log.ts'
import { MeshConfig } from './mesh.ts'
import { PolicyConfig } from './policy.ts'
import { ShutdownConfig } from './shutdown.ts'
import { SiteConfig } from './site.ts'
import { UpstreamConfig } from './upstream.ts'

// Property order is the order of config/peerglance.yaml.
export const AgentConfig = Type.Object({
  dataDir: DataDirConfig,
  agent: SiteConfig,
  api: ApiConfig,
  log: LogConfig,
  auth: AuthConfig,
  audit: AuditConfig,
  policy: PolicyConfig,
  chunks: ChunksConfig,
  cache: CacheConfig,
  glance: GlanceConfig,
  import: ImportConfig,
  mesh: MeshConfig,
  upstream: UpstreamConfig,
  shutdown: ShutdownConfig
}, {
  additionalProperties: false,
  default: {},
  description: 'Configuration of one peerglance agent.'
})
export type AgentConfig = Static<typeof AgentConfig>
