import { randomBytes } from 'node:crypto'
import { connect, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { frame, FrameReader } from '../src/framing.ts'
import type { BodySink } from '../src/framing.ts'
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
    const onread = inbox.onread(8)
    const buffer = onread.buffer()
    const callback = onread.callback
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

describe('reading a body in place', () => {
  it('the socket reads into the reader\'s space when it offers one, else into the inbox\'s buffer; nothing read in place is copied', () => {
    const inbox = new Inbox()
    const { buffer, callback } = inbox.onread(8)
    const own = buffer()
    const body = new Uint8Array(32)
    let filled = 0
    const got: Array<{ inPlace: boolean, bytes: number[] }> = []
    inbox.read(data => {
      got.push({ inPlace: data.buffer === body.buffer && data.byteOffset === filled, bytes: [...data] })
      filled += data.byteLength
    }, () => filled < body.byteLength ? body.subarray(filled) : undefined)
    // Where the next read goes is asked after each read (and when the socket is made).
    const first = buffer()
    expect(first.buffer).toBe(body.buffer)
    first.set([1, 2, 3])
    callback(3, first)
    const second = buffer()
    expect(second.byteOffset).toBe(3)
    second.set([4, 5])
    callback(2, second)
    expect(got).toEqual([{ inPlace: true, bytes: [1, 2, 3] }, { inPlace: true, bytes: [4, 5] }])
    expect([...body.subarray(0, 5)]).toEqual([1, 2, 3, 4, 5])
    expect(inbox.stats).toEqual({ inPlace: 5, buffered: 0 })
    // A reader that stops takes its space with it.
    inbox.stop()
    expect(buffer()).toBe(own)
  })

  it('an aborted stream reads nowhere: the socket\'s next read goes to the inbox\'s own buffer, never into a body that is about to be let go', async () => {
    const { sender } = await pair()
    const inbox = new Inbox()
    const { buffer } = inbox.onread(8)
    const own = buffer()
    const body = new Uint8Array(32)
    const stream = socketFrameStream(sender, inbox)
    stream.listen({ data: () => {}, remoteDone: () => {}, closed: () => {}, space: () => body })
    expect(buffer().buffer).toBe(body.buffer)
    stream.abort(new Error('timed out'))
    expect(buffer()).toBe(own)
  })

  it('a frame reader offers the rest of the body being read, never more (the next header must not land in it), and nothing between frames', () => {
    const body = new Uint8Array(64)
    let filled = 0
    const pieces: Uint8Array[] = []
    const sink: BodySink = {
      write: piece => { pieces.push(piece); filled += piece.byteLength },
      end: () => {},
      space: () => body.subarray(filled)
    }
    const reader = new FrameReader(1024, () => sink)
    expect(reader.space()).toBeUndefined()
    const header = (length: number): Buffer => Buffer.from(frame(1, 0, 1, new Uint8Array(length)).subarray(0, 10))
    reader.push(header(40))
    expect(reader.space()?.byteLength).toBe(40)
    reader.push(new Uint8Array(15))
    expect(reader.space()?.byteLength).toBe(25)
    expect(reader.space()?.byteOffset).toBe(15)
    reader.push(new Uint8Array(25))
    expect(reader.space()).toBeUndefined()
    // A sink that offers no space (an error message, a HAVE answer): the bytes are read elsewhere.
    const plain = new FrameReader(1024, () => ({ write: () => {}, end: () => {} }))
    plain.push(header(40))
    expect(plain.space()).toBeUndefined()
  })
})
