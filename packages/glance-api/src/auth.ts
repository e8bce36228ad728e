import type { Authenticator, Identity, RequestHeaders } from '@peerglance/interface'

export interface NoAuthInit {
  /** The identity of a request that names none: an admin, so `npm start` is usable at once. */
  projectId: string
  userId: string
  roles: readonly string[]
}

function header (headers: RequestHeaders, name: string): string | undefined {
  const v = headers[name]
  const s = Array.isArray(v) ? v[0] : v
  return s == null || s.trim() === '' ? undefined : s.trim()
}

/**
 * Glance's unauthenticated mode: the caller is whoever the `X-*` headers say (as keystonemiddleware
 * would have set them), and any `X-Auth-Token` is accepted.
 */
export function noAuth (init: NoAuthInit): Authenticator {
  return {
    async authenticate (headers: RequestHeaders): Promise<Identity> {
      const roles = header(headers, 'x-roles')
      return {
        projectId: header(headers, 'x-project-id') ?? header(headers, 'x-tenant-id') ?? init.projectId,
        userId: header(headers, 'x-user-id') ?? init.userId,
        roles: roles == null ? init.roles : roles.split(',').map(r => r.trim().toLowerCase()).filter(r => r !== '')
      }
    }
  }
}
