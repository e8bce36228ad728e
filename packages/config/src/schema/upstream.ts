import { Type, type Static } from 'typebox'
import type { ConfigIssue } from '../errors.ts'

const HttpUrl = Type.String({ pattern: '^https?://[^\\s/]+(/[^\\s]*)?$' })
const NULLABLE = { default: null, errorMessage: 'must be a string or null' }

export const UpstreamConfig = Type.Object({
  url: Type.Union([HttpUrl, Type.Null()], { ...NULLABLE, description: 'The cloud\'s existing Glance (v2), e.g. http://glance.example.net:9292, whose images the mesh mirrors and reads through; null (and no region) means no upstream.' }),
  region: Type.Union([Type.String({ minLength: 1 }), Type.Null()], { ...NULLABLE, description: 'Find the upstream Glance in the Keystone catalog instead of url: the image endpoint of this region (interface internal, else public).' }),
  keystone: Type.Object({
    url: Type.Union([HttpUrl, Type.Null()], { ...NULLABLE, description: 'Keystone v3 that issues the agent\'s upstream token, e.g. http://keystone.example.net:5000/v3; null means auth.keystone.url.' }),
    username: Type.String({ default: '', description: 'Service user the agent reads the upstream as. It sees what Glance shows it: give it the admin role (as Glance\'s own service user usually has) to mirror every image with its members.' }),
    password: Type.String({ default: '', description: 'Its password. Never logged.' }),
    projectName: Type.String({ default: 'service', description: 'Project its token is scoped to.' }),
    userDomainName: Type.String({ default: 'Default', description: 'Domain of the user.' }),
    projectDomainName: Type.String({ default: 'Default', description: 'Domain of the project.' }),
    applicationCredentialId: Type.String({ default: '', description: 'An application credential instead of user and password (its id).' }),
    applicationCredentialSecret: Type.String({ default: '', description: 'The application credential\'s secret. Never logged.' })
  }, { additionalProperties: false, default: {}, description: 'The agent\'s credentials at the upstream: a Keystone service user, or an application credential.' }),
  writes: Type.Enum(['read-only', 'write-through'], {
    default: 'read-only',
    description: 'What writes to upstream images do. read-only: 403, as a cache would (create, update, upload, delete of mirrored images are refused; images made in the mesh are unaffected). write-through: every image create, and any write to an upstream image, is sent to the upstream as the caller made it, with the caller\'s X-Auth-Token (in noauth mode, the agent\'s own), so the upstream\'s policy decides and its answer is the caller\'s; the mesh mirrors the result before the answer, and holds nothing the upstream refused.'
  }),
  pollIntervalMs: Type.Integer({ default: 30_000, minimum: 1000, description: 'How often the upstream\'s image list is read (by the few pollers only, see pollers), with up to 10 % jitter.' }),
  pollers: Type.Integer({ default: 2, minimum: 1, maximum: 16, description: 'How many agents of the mesh poll the upstream: those ranked first by rendezvous hashing over the agents each knows; the others receive the mirrored records by replication. Upstream load stays the same whatever the mesh size.' }),
  timeoutMs: Type.Integer({ default: 10_000, minimum: 100, description: 'How long one request to the upstream (or its Keystone) may take before it counts as down.' })
}, {
  additionalProperties: false,
  default: {},
  description: 'An existing Glance as the origin: the mesh mirrors its image metadata and reads image bytes through from it once per mesh (README, "Adopt it in a running cloud").'
})
export type UpstreamConfig = Static<typeof UpstreamConfig>

/** What the schema alone cannot say: options that depend on each other. */
export function upstreamIssues (upstream: UpstreamConfig, authKeystoneUrl: string | null): ConfigIssue[] {
  if (upstream.url == null && upstream.region == null) return []
  const k = upstream.keystone
  const issues: ConfigIssue[] = []
  if (k.url == null && authKeystoneUrl == null) issues.push({ path: 'upstream.keystone.url', message: 'is required when an upstream is set and auth.keystone.url is not' })
  if (k.applicationCredentialId === '' && (k.username === '' || k.password === '')) {
    issues.push({ path: 'upstream.keystone', message: 'needs username and password, or applicationCredentialId and applicationCredentialSecret, when an upstream is set' })
  }
  if (k.applicationCredentialId !== '' && k.applicationCredentialSecret === '') {
    issues.push({ path: 'upstream.keystone.applicationCredentialSecret', message: 'is required with applicationCredentialId' })
  }
  return issues
}
