import { Type, type Static } from 'typebox'
import type { ConfigIssue } from '../errors.ts'
import { parseListen } from '../listen.ts'

export const NoAuthConfig = Type.Object({
  projectId: Type.String({
    minLength: 1,
    default: 'admin',
    description: 'Project of a request that carries no identity header at all (no X-Project-Id, X-Tenant-Id, X-User-Id or X-Roles), so that `openstack` with OS_AUTH_TYPE=none works in a lab.'
  }),
  userId: Type.String({
    minLength: 1,
    default: 'admin',
    description: 'User of a request that carries no identity header at all.'
  }),
  roles: Type.Array(Type.String({ minLength: 1 }), {
    default: ['admin', 'member', 'reader'],
    description: 'Roles of a request that carries no identity header at all; the default grants admin. A request that names a project or user but no X-Roles has no roles, as in Glance, so it is never admin by accident.'
  }),
  allowRemote: Type.Boolean({
    default: false,
    description: 'Whether noauth may serve on a non-loopback api.listen address. noauth believes whatever identity a caller claims, so the agent refuses to start on such an address unless this is true.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'noauth mode: the caller is whoever the X-Project-Id, X-User-Id and X-Roles headers say. For labs and tests only.'
})
export type NoAuthConfig = Static<typeof NoAuthConfig>

export const KeystoneConfig = Type.Object({
  url: Type.Union([
    Type.String({ pattern: '^https?://[^\\s/]+(/[^\\s]*)?$' }),
    Type.Null()
  ], {
    errorMessage: 'must be an http(s) URL or null',
    default: null,
    description: 'Keystone v3 endpoint that validates tokens, e.g. http://127.0.0.1:5000/v3; required in keystone mode. It is also the uri of the WWW-Authenticate header of a 401.'
  }),
  username: Type.String({
    default: 'glance',
    description: 'The agent\'s own Keystone user. It needs the service role (or admin) to validate other users\' tokens.'
  }),
  password: Type.String({
    default: '',
    description: 'Password of that user; required in keystone mode. Never logged.'
  }),
  projectName: Type.String({
    default: 'service',
    description: 'Project the agent\'s own token is scoped to.'
  }),
  userDomainName: Type.String({
    default: 'Default',
    description: 'Domain of the agent\'s user.'
  }),
  projectDomainName: Type.String({
    default: 'Default',
    description: 'Domain of the agent\'s project.'
  }),
  region: Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
    default: null,
    description: 'Region whose identity endpoint (interface internal, else public) in the agent\'s service catalog validates tokens, as keystonemiddleware\'s region_name; null means url itself.'
  }),
  cacheSeconds: Type.Integer({
    minimum: 0,
    maximum: 86400,
    default: 300,
    description: 'How long a validated token is trusted without asking Keystone again, and never past its expiry; a revoked token is refused once its entry lapses. 0 asks Keystone on every request. Entries are bounded in number.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'keystone mode: every request\'s X-Auth-Token is validated against Keystone v3 with the agent\'s own service token.'
})
export type KeystoneConfig = Static<typeof KeystoneConfig>

export const AuthConfig = Type.Object({
  mode: Type.Enum(['noauth', 'keystone'], {
    default: 'noauth',
    description: 'How requests are authenticated. keystone validates each X-Auth-Token with Keystone (production). noauth trusts the identity headers a request carries, so it serves only on loopback unless auth.noauth.allowRemote says otherwise.'
  }),
  noauth: NoAuthConfig,
  keystone: KeystoneConfig
}, {
  additionalProperties: false,
  default: {},
  description: 'Who the caller of an API request is.'
})
export type AuthConfig = Static<typeof AuthConfig>

/** What the schema alone cannot say: options that depend on each other. */
export function authIssues (auth: AuthConfig, apiListen: string): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  if (auth.mode === 'keystone') {
    if (auth.keystone.url == null) issues.push({ path: 'auth.keystone.url', message: 'is required when auth.mode is keystone' })
    if (auth.keystone.password === '') issues.push({ path: 'auth.keystone.password', message: 'is required when auth.mode is keystone' })
  } else if (!auth.noauth.allowRemote && !isLoopback(apiListen)) {
    issues.push({
      path: 'api.listen',
      message: `${apiListen} is not a loopback address, and noauth believes any identity a caller claims: use auth.mode keystone, or set auth.noauth.allowRemote: true on a trusted network`
    })
  }
  return issues
}

function isLoopback (listen: string): boolean {
  let host: string
  try {
    host = parseListen(listen).host
  } catch {
    return true // the schema reports a bad address already
  }
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}
