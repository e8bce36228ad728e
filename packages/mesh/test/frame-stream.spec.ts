import { randomBytes } from 'node:crypto'
import { connect, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { frame } from '../src/framing.ts'
import { Inbox, socketFrameStream } from '../src/frame-stream.ts'

let server: Server | undefined
const sockets: Socket[] = []

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy()
  await new Promise<void>(resolve => { server?.close(() => { resolve() }) ?? resolve() })
  server = undefined
})

/** A connected pair on loopback: the sending socket, and everything the other end receives until it closes. */
async function pair (): Promise<{ sender: Socket, received: Promise<Buffer> }> {
  const { promise: received, resolve } = Promise.withResolvers<Buffer>()
  server = createServer(socket => {
    sockets.push(socket)
    const got: Buffer[] = []
    socket.on('data', (d: Buffer) => got.push(d))
    socket.on('end', () => { resolve(Buffer.concat(got)) })
  })
  await new Promise<void>(resolve => server!.listen(0, '127.0.0.1', resolve))
  const sender = connect((server.address() as { port: number }).port, '127.0.0.1')
  sockets.push(sender)
  await new Promise<void>(resolve => sender.once('connect', () => { resolve() }))
  return { sender, received }
}

describe('a socket as a frame stream', () => {
  it('writes a chunk\'s body as it is, not corked with its header (a TLS socket copies a writev into a fresh buffer)', async () => {
    const { sender, received } = await pair()
    const writev = vi.spyOn(sender as unknown as { _writev: (...args: unknown[]) => void }, '_writev')
    const write = vi.spyOn(sender, 'write')
    const stream = socketFrameStream(sender)
    stream.listen({ data: () => {}, remoteDone: () => {}, closed: () => {} })
    const body = randomBytes(1024 * 1024)
    const sent = vi.fn()
    stream.send(frame(1, 0, 7, body), sent)
    await stream.close()
    const bytes = await received
    expect(bytes.subarray(10).equals(body)).toBe(true)
    expect([bytes[0], bytes.readUInt32BE(2), bytes.readUInt32BE(6)]).toEqual([1, 7, body.byteLength])
    expect(write.mock.calls.map(call => call[0])).toContain(body)
    expect(writev).not.toHaveBeenCalled()
    expect(sent).toHaveBeenCalledTimes(1)
  })

  it('writes a small frame (a request) as one buffer', async () => {
    const { sender, received } = await pair()
    const write = vi.spyOn(sender, 'write')
    const stream = socketFrameStream(sender)
    stream.listen({ data: () => {}, remoteDone: () => {}, closed: () => {} })
    const cid = randomBytes(36)
    stream.send(frame(1, 0, 9, cid))
    await stream.close()
    const bytes = await received
    expect(bytes.byteLength).toBe(46)
    expect(bytes.subarray(10).equals(cid)).toBe(true)
    expect(write.mock.calls.filter(call => (call[0] as Uint8Array).byteLength > 0)).toHaveLength(1)
  })
})

describe('an inbox (a socket reading into one buffer of its own)', () => {
  it('hands each read to the reader, and keeps copies of what came while nobody read, in order', () => {
    const inbox = new Inbox()
    const { buffer, callback } = inbox.onread(8)
    buffer.set([1, 2, 3])
    callback(3, buffer)
    // The socket reuses its buffer for the next read: what was held must not change with it.
    buffer.set([9, 9, 9, 9])
    const got: number[][] = []
    inbox.read(data => got.push([...data]))
    expect(got).toEqual([[1, 2, 3]])
    callback(2, buffer)
    expect(got).toEqual([[1, 2, 3], [9, 9]])
    // A reader that stops with bytes it did not use (after a credential): they come first for the next one.
    inbox.stop(Buffer.from([7]))
    buffer.set([4])
    callback(1, buffer)
    inbox.read(data => got.push([...data]))
    expect(got).toEqual([[1, 2, 3], [9, 9], [7], [4]])
  })
})
