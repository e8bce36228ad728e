/** Who is calling: what Keystone (or the noauth mode) says about the request. */
export interface Identity {
  projectId: string | null
  userId: string | null
  roles: readonly string[]
}

export type RequestHeaders = Record<string, string | string[] | undefined>

/** Turns request headers into an identity; the one seam where Keystone plugs in. */
export interface Authenticator {
  authenticate (headers: RequestHeaders, opts?: { signal?: AbortSignal }): Promise<Identity>
}
