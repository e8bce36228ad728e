import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAgent } from '@peerglance/testing'
import type { TestAgent } from '@peerglance/testing'
import { glance } from './client.ts'

let agent: TestAgent
let api: ReturnType<typeof glance>

beforeAll(async () => {
  agent = await startAgent()
  api = glance(agent.url)
})
afterAll(async () => { await agent.stop() })

/** Sends bytes as they are (no client library would send these) and reads until the server closes. */
async function rawRequest (head: string, body = ''): Promise<{ status: number, json: any }> {
  const { hostname, port } = new URL(agent.url)
  const text = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => { socket.end(head + '\r\n\r\n' + body) })
    const parts: Buffer[] = []
    socket.on('data', (b: Buffer) => parts.push(b))
    socket.on('error', reject)
    socket.on('close', () => { resolve(Buffer.concat(parts).toString()) })
    socket.setTimeout(10_000, () => { socket.destroy(new Error('no answer within 10 s')) })
  })
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1])
  return { status, json: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) }
}

describe('requests no route can take', () => {
  it('answers a body framing Node cannot parse with Glance\'s 400 JSON, and stores nothing', async () => {
    const created = await api.create({ name: 'framing' })
    const id = created.json.id as string
    const path = `/v2/images/${id}/file`
    const malformed = [
      `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: -1`,
      `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\nTransfer-Encoding: chunked`,
      `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\nContent-Length: 6`
    ]
    for (const head of malformed) {
      const reply = await rawRequest(head, 'hello')
      expect(reply.status).toBe(400)
      expect(reply.json.code).toBe('400 Bad Request')
      expect(reply.json.title).toBe('Bad Request')
      expect(reply.json.message).toMatch(/^Malformed request: /)
    }
    const image = await api.call('GET', `/v2/images/${id}`)
    expect(image.json.status).toBe('queued')
    expect(image.json.size).toBeNull()
    expect((await api.download(id)).status).toBe(204)
  })

  it('answers an oversized request head with 431 in the same shape', async () => {
    const reply = await rawRequest(`GET /v2/images HTTP/1.1\r\nHost: x\r\nX-Filler: ${'a'.repeat(20_000)}`)
    expect(reply.status).toBe(431)
    expect(reply.json.code).toBe('431 Request Header Fields Too Large')
  })

  it('gives an id of any length Glance\'s 404, and an undecodable path Glance\'s 400', async () => {
    const long = await api.call('GET', `/v2/images/${'a'.repeat(5000)}`)
    expect(long.status).toBe(404)
    expect(long.json.code).toBe('404 Not Found')
    const undecodable = await api.call('GET', '/v2/images/%zz')
    expect(undecodable.status).toBe(400)
    expect(undecodable.json.code).toBe('400 Bad Request')
    expect(undecodable.json.message).toContain('%zz')
    expect((await api.call('GET', '/v2/images')).status).toBe(200)
  })
})
