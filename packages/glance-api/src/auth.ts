import type { Authenticator, Identity, RequestHeaders } from '@peerglance/interface'

export interface NoAuthInit {
  /** The identity of a request that states none: an admin, so `openstack` with OS_AUTH_TYPE=none works in a lab. */
  projectId: string
  userId: string
  roles: readonly string[]
}

const IDENTITY_HEADERS = ['x-project-id', 'x-tenant-id', 'x-user-id', 'x-roles', 'openstack-system-scope', 'x-domain-id']

function header (headers: RequestHeaders, name: string): string | undefined {
  const v = headers[name]
  const s = Array.isArray(v) ? v[0] : v
  return s == null || s.trim() === '' ? undefined : s.trim()
}

/**
 * Glance's unauthenticated mode: the caller is whoever the `X-*` headers say, as Glance reads the
 * headers keystonemiddleware would have set (`OpenStack-System-Scope` and `X-Domain-Id` for tokens
 * of other scopes), so a request that names a project but no X-Roles has no roles and is not admin. Only a request with no identity header at all gets the configured
 * identity. Any `X-Auth-Token` is ignored.
 */
export function noAuth (init: NoAuthInit): Authenticator {
  return {
    async authenticate (headers: RequestHeaders): Promise<Identity> {
      if (IDENTITY_HEADERS.every(name => header(headers, name) == null)) {
        return { projectId: init.projectId, userId: init.userId, roles: init.roles }
      }
      return {
        projectId: header(headers, 'x-project-id') ?? header(headers, 'x-tenant-id') ?? null,
        userId: header(headers, 'x-user-id') ?? null,
        roles: (header(headers, 'x-roles') ?? '').split(',').map(r => r.trim().toLowerCase()).filter(r => r !== ''),
        // oslo.context reads a system-scoped or domain-scoped token's scope from these.
        systemScope: header(headers, 'openstack-system-scope') ?? null,
        domainId: header(headers, 'x-domain-id') ?? null
      }
    }
  }
}
