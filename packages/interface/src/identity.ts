/** Who is calling: what Keystone (or the noauth mode) says about the request. */
export interface Identity {
  projectId: string | null
  userId: string | null
  roles: readonly string[]
  /**
   * `all` for a system-scoped token (Keystone's `token.system`), as oslo.context's `system_scope`;
   * such a token has no project. Absent or null: project (or domain) scope.
   */
  systemScope?: string | null
  /** The domain of a domain-scoped token (no project either). */
  domainId?: string | null
}

export type RequestHeaders = Record<string, string | string[] | undefined>

/** Turns request headers into an identity; the one seam where Keystone plugs in. */
export interface Authenticator {
  /** @throws NotAuthenticatedError (401) or AuthUnavailableError (503) */
  authenticate (headers: RequestHeaders, opts?: { signal?: AbortSignal }): Promise<Identity>
  /** The WWW-Authenticate value of a 401, e.g. `Keystone uri="http://keystone:5000/v3"`. */
  readonly challenge?: string
}
