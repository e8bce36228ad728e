import { Type, type Static } from 'typebox'

export const NoAuthConfig = Type.Object({
  projectId: Type.String({
    minLength: 1,
    default: 'admin',
    description: 'Project that owns what a request creates when it has no X-Project-Id or X-Tenant-Id header.'
  }),
  userId: Type.String({
    minLength: 1,
    default: 'admin',
    description: 'User a request acts as when it has no X-User-Id header.'
  }),
  roles: Type.Array(Type.String({ minLength: 1 }), {
    default: ['admin', 'member', 'reader'],
    description: 'Roles a request holds when it has no X-Roles header. The default grants admin, so headerless clients can do everything.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'The identity assumed in noauth mode when a request does not state its own in headers.'
})
export type NoAuthConfig = Static<typeof NoAuthConfig>

export const AuthConfig = Type.Object({
  // TODO: add 'keystone' once token validation exists.
  mode: Type.Enum(['noauth'], {
    default: 'noauth',
    description: 'How requests are authenticated. noauth trusts the X-Project-Id, X-User-Id and X-Roles headers a request carries, so expose the API only to trusted callers; keystone will come later.'
  }),
  noauth: NoAuthConfig
}, {
  additionalProperties: false,
  default: {},
  description: 'Who the caller of an API request is.'
})
export type AuthConfig = Static<typeof AuthConfig>
