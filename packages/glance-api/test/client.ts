/** A tiny Glance client over fetch for HTTP tests: real sockets, raw statuses and bodies. */
type Body = NonNullable<RequestInit['body']>
export interface Reply { status: number, headers: Headers, text: string, json: any }

export function glance (base: string, defaults: Record<string, string> = {}) {
  async function call (method: string, path: string, init: { body?: unknown, headers?: Record<string, string>, raw?: Body } = {}): Promise<Reply> {
    const headers: Record<string, string> = { accept: 'application/json', ...defaults, ...init.headers }
    let body: Body | undefined = init.raw
    if (init.body !== undefined) {
      body = JSON.stringify(init.body)
      headers['content-type'] ??= 'application/json'
    }
    const res = await fetch(base + path, { method, headers, body, duplex: 'half' } as RequestInit)
    const text = await res.text()
    let json: unknown
    try { json = JSON.parse(text) } catch { json = undefined }
    return { status: res.status, headers: res.headers, text, json }
  }
  return {
    call,
    create: async (body: Record<string, unknown> = {}, headers?: Record<string, string>) =>
      await call('POST', '/v2/images', { body: { disk_format: 'raw', container_format: 'bare', ...body }, headers }),
    patch: async (id: string, ops: unknown, dialect = '2.1', headers?: Record<string, string>) =>
      await call('PATCH', `/v2/images/${id}`, { raw: JSON.stringify(ops), headers: { 'content-type': `application/openstack-images-v${dialect}-json-patch`, ...headers } }),
    upload: async (id: string, data: Body, headers?: Record<string, string>) =>
      await call('PUT', `/v2/images/${id}/file`, { raw: data, headers: { 'content-type': 'application/octet-stream', ...headers } }),
    download: async (id: string, headers?: Record<string, string>) => {
      const res = await fetch(`${base}/v2/images/${id}/file`, { headers: { ...defaults, ...headers } })
      return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) }
    }
  }
}

export const asProject = (project: string, roles = 'member,reader'): Record<string, string> => ({ 'x-project-id': project, 'x-roles': roles, 'x-user-id': `${project}-user` })
