/**
 * Attacks on the bulk channel (bulk-channel.ts) by an outsider and by a compromised member, with
 * plain node:net / node:tls clients: what each can hold, and for how long.
 */
import { connect as netConnect, createServer as netServer } from 'node:net'
import type { Socket } from 'node:net'
import { connect } from 'node:tls'
import type { TLSSocket } from 'node:tls'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { cidToBytes } from '@peerglance/interface'
import { afterEach, describe, expect, it } from 'vitest'
import { bulkAuth, dialBulk } from '../src/bulk-channel.ts'
import type { BulkAuth } from '../src/bulk-channel.ts'
import { Membership, mintCredential } from '../src/membership.ts'
import { CHUNK_PROTOCOL } from '../src/constants.ts'
import { encodeAnnounce, encodeHaveRequest, HAVE_DOWNLOADING, HAVE_NONE, MAX_BULK_ANNOUNCE_BODY } from '../src/framing.ts'
import { cleanup, fullyConnected, MiB, seedImage, startAgent } from './fixtures.ts'

/** The listener's deadline for the TLS handshake and the credential (bulk-channel.ts), plus slack. */
const DEADLINE_MS = 10_000 + 1_500

/** A TLS identity with a credential under `secret` (the fixtures' agents share the empty one). */
async function identity (secret: string): Promise<BulkAuth> {
  const key = await generateKeyPair('Ed25519')
  return bulkAuth(key, mintCredential(secret, peerIdFromPrivateKey(key).toString()), new Membership({ secret: '' }))!
}

/** The first bytes a TLS 1.3 client sends (its ClientHello), caught by a plain TCP server. */
async function clientHello (): Promise<Buffer> {
  const server = netServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const hello = new Promise<Buffer>(resolve => server.once('connection', (s: Socket) => s.once('data', (d: Buffer) => { resolve(d); s.destroy() })))
  const tls = connect({ host: '127.0.0.1', port, minVersion: 'TLSv1.3', rejectUnauthorized: false })
  tls.on('error', () => {})
  const bytes = await hello
  tls.destroy()
  server.close()
  return bytes
}

/** Writes `bytes` to the socket one at a time, every `everyMs`, until it closes; resolves with when it closed (ms after `start`). */
async function trickle (socket: Socket | TLSSocket, bytes: Buffer, everyMs: number, start: number, maxMs: number): Promise<number> {
  let i = 0
  const timer = setInterval(() => { if (i < bytes.byteLength && !socket.destroyed) socket.write(bytes.subarray(i, ++i)) }, everyMs)
  return await new Promise<number>(resolve => {
    const give = setTimeout(() => { socket.destroy(); resolve(Number.POSITIVE_INFINITY) }, maxMs)
    socket.once('close', () => {
      clearInterval(timer)
      clearTimeout(give)
      resolve(Date.now() - start)
    })
  })
}

/** A GET request frame (chunk-exchange.ts) for `cid` with request id `id`. */
function getFrame (cid: Uint8Array, id: number, type = 1): Buffer {
  const header = Buffer.alloc(10)
  header[0] = type
  header.writeUInt32BE(id, 2)
  header.writeUInt32BE(cid.byteLength, 6)
  return Buffer.concat([header, cid])
}

/** Sends one GET on a proven socket and resolves with the response frame (header and body). */
async function getOn (socket: TLSSocket, cid: Uint8Array): Promise<Buffer> {
  const got: Buffer[] = []
  let length = 0
  socket.resume()
  socket.write(getFrame(cid, 1))
  return await new Promise<Buffer>((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      got.push(d)
      length += d.byteLength
      const all = Buffer.concat(got)
      if (length >= 10 && length >= 10 + all.readUInt32BE(6)) resolve(all)
    })
    socket.once('close', () => { reject(new Error('closed before the response')) })
  })
}

describe('attacks on the bulk channel', () => {
  afterEach(cleanup)

  it('a connection that trickles its TLS handshake or its credential a byte at a time is dropped at the deadline, not held', { timeout: 60_000 }, async () => {
    const seed = await startAgent({ chunkSize: MiB })
    const image = await seedImage(seed, MiB)
    const port = seed.mesh.exchange.bulkPort!
    const start = Date.now()
    // A member proven meanwhile keeps its channel past the deadline.
    const member = await dialBulk('127.0.0.1', port, peerIdFromString(seed.mesh.peerId), await identity(''), AbortSignal.timeout(5_000))

    // An outsider with nothing: a ClientHello, one byte every 1.5 s (each byte reset an idle timeout).
    const hello = await clientHello()
    const raw = netConnect({ host: '127.0.0.1', port })
    raw.on('error', () => {})
    const rawClosed = trickle(raw, hello, 1_500, start, 25_000)

    // An outsider with a fresh Ed25519 key (the listener accepts any certificate, then asks for a
    // credential): the credential's length says 2,000 bytes, which come one every 1.5 s.
    const stranger = await identity('not-this-mesh')
    const tls = connect({ host: '127.0.0.1', port, key: stranger.key, cert: stranger.cert, minVersion: 'TLSv1.3', rejectUnauthorized: false, checkServerIdentity: () => undefined })
    tls.on('error', () => {})
    await new Promise(resolve => tls.once('secureConnect', resolve))
    const slow = Buffer.alloc(2 + 2000, 0x20)
    slow.writeUInt16BE(2000)
    const tlsClosed = trickle(tls, slow, 1_500, start, 25_000)

    expect(await rawClosed).toBeLessThan(DEADLINE_MS)
    expect(await tlsClosed).toBeLessThan(DEADLINE_MS)
    await new Promise(resolve => setTimeout(resolve, DEADLINE_MS - (Date.now() - start)))
    expect(member.destroyed).toBe(false)
    expect((await getOn(member, cidToBytes(image.manifest.cids[0]))).byteLength).toBe(10 + MiB)
    member.destroy()
    expect(seed.mesh.exchange.stats.bulkChannels).toBe(1)
  })

  it('one host\'s silent connections, and one member\'s pile of channels, leave room for the others', { timeout: 60_000 }, async () => {
    const seed = await startAgent({ chunkSize: MiB })
    const port = seed.mesh.exchange.bulkPort!
    const seedPeer = peerIdFromString(seed.mesh.peerId)
    // 1,100 TCP connections from another loopback address that never say a word (past the 1,024 a listener takes).
    const silent = Array.from({ length: 1_100 }, () => netConnect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }).on('error', () => {}))
    await Promise.all(silent.map(async s => await new Promise(resolve => { s.once('connect', resolve); s.once('close', resolve) })))
    await new Promise(resolve => setTimeout(resolve, 500))
    // One member opens 20 channels: 16 are its share.
    const greedy = await identity('')
    const piles = await Promise.allSettled(Array.from({ length: 20 }, async () => await dialBulk('127.0.0.1', port, seedPeer, greedy, AbortSignal.timeout(8_000))))
    expect(piles.filter(p => p.status === 'fulfilled').length).toBe(16)
    // Another member still gets in.
    const other = await dialBulk('127.0.0.1', port, seedPeer, await identity(''), AbortSignal.timeout(8_000))
    expect(other.destroyed).toBe(false)
    other.destroy()
    for (const p of piles) if (p.status === 'fulfilled') p.value.destroy()
    for (const s of silent) s.destroy()
  })

  it('a member that pipelines GETs and reads nothing makes the listener read only a few chunks ahead', { timeout: 60_000 }, async () => {
    const seed = await startAgent({ chunkSize: 4 * MiB })
    const image = await seedImage(seed, 4 * MiB)
    const member = await identity('')
    const socket = await dialBulk('127.0.0.1', seed.mesh.exchange.bulkPort!, peerIdFromString(seed.mesh.peerId), member, AbortSignal.timeout(5_000))
    // 64 GETs (the most a stream may queue) of the same 4 MiB chunk; the socket stays paused.
    const cid = cidToBytes(image.manifest.cids[0])
    socket.write(Buffer.concat(Array.from({ length: 64 }, (_, i) => getFrame(cid, i + 1))))
    await new Promise(resolve => setTimeout(resolve, 3_000))
    // Each chunk read is one served: all 64 (256 MiB held) before the listener bounded it; a few
    // now, plus what the kernel's socket buffers took.
    expect(seed.mesh.exchange.stats.getsServed).toBeLessThanOrEqual(12)
    expect(socket.destroyed).toBe(false)
    socket.destroy()
  })

  it('a member\'s HAVE on the bulk channel (GETs only) ends it unanswered', { timeout: 60_000 }, async () => {
    const seed = await startAgent({ chunkSize: MiB })
    const image = await seedImage(seed, MiB)
    const member = await identity('')
    const socket = await dialBulk('127.0.0.1', seed.mesh.exchange.bulkPort!, peerIdFromString(seed.mesh.peerId), member, AbortSignal.timeout(5_000))
    const got: Buffer[] = []
    socket.on('data', (d: Buffer) => got.push(d))
    socket.on('error', () => {})
    socket.resume()
    // A 1 MiB HAVE-typed body: on libp2p, up to 4 MiB per request (64 queued per stream) are read.
    socket.write(getFrame(Buffer.alloc(MiB, 1), 9, 2))
    socket.write(getFrame(cidToBytes(image.manifest.cids[0]), 10))
    await new Promise<void>(resolve => { socket.once('close', () => { resolve() }); setTimeout(resolve, 5_000) })
    expect(socket.destroyed).toBe(true)
    expect(Buffer.concat(got).byteLength).toBe(0)
    expect(seed.mesh.exchange.stats.havesServed).toBe(0)
  })

  it('a member\'s ANNOUNCE longer than the bulk channel takes, or a GET of more than a CID, ends it at the header; a short ANNOUNCE is heard', { timeout: 60_000 }, async () => {
    const seed = await startAgent({ chunkSize: MiB })
    const image = await seedImage(seed, MiB)
    const member = await identity('')
    const dial = async (): Promise<TLSSocket> => await dialBulk('127.0.0.1', seed.mesh.exchange.bulkPort!, peerIdFromString(seed.mesh.peerId), member, AbortSignal.timeout(5_000))
    const announce = (indices: number): Buffer => Buffer.from(encodeAnnounce('k1', { state: HAVE_DOWNLOADING, total: 1 << 20, indices: Array.from({ length: indices }, (_, i) => i) }))
    for (const bad of [getFrame(announce(MAX_BULK_ANNOUNCE_BODY / 4), 0, 4), getFrame(Buffer.alloc(37, 1), 9)]) {
      const socket = await dial()
      const got: Buffer[] = []
      socket.on('data', (d: Buffer) => got.push(d))
      socket.on('error', () => {})
      socket.resume()
      // Only the header and a few bytes of the body: the listener must not wait for the rest.
      socket.write(bad.subarray(0, 16))
      // The listener ends the connection (the dialler is half-open: it sees the end).
      const ended = await new Promise<boolean>(resolve => { socket.once('end', () => { resolve(true) }); socket.once('close', () => { resolve(true) }); setTimeout(() => { resolve(false) }, 5_000) })
      expect(ended).toBe(true)
      expect(Buffer.concat(got).byteLength).toBe(0)
      socket.destroy()
    }
    expect(seed.mesh.exchange.stats.announcesHeard).toBe(0)
    const socket = await dial()
    socket.write(getFrame(announce(100), 0, 4))
    await expect.poll(() => seed.mesh.exchange.stats.bulkAnnouncesHeard, { timeout: 5_000 }).toBe(1)
    // The channel stays good for GETs.
    const answer = await getOn(socket, cidToBytes(image.manifest.cids[0]))
    expect(answer.readUInt32BE(6)).toBe(MiB)
    socket.destroy()
  })
})

describe('a member answering GETs with more than a chunk', () => {
  afterEach(cleanup)

  it('is refused at the frame header: the reader keeps no buffer of the size it announced', { timeout: 60_000 }, async () => {
    // The seed answers every GET with 16 MiB (no chunk is larger than 4 MiB).
    // Both ways a store hands out chunks (the bulk channel serves leased buffers).
    const seed = await startAgent({
      chunkSize: MiB,
      wrap: store => Object.assign(Object.create(store) as typeof store, {
        readChunk: async () => Buffer.alloc(16 * MiB, 7),
        readChunkLease: async () => ({ bytes: Buffer.alloc(16 * MiB, 7), release () {} })
      })
    })
    const image = await seedImage(seed, MiB)
    const reader = await startAgent({ chunkSize: MiB, bootstrap: seed.mesh.multiaddrs })
    await fullyConnected([seed, reader])
    const err = await reader.mesh.exchange.get(peerIdFromString(seed.mesh.peerId), image.manifest.cids[0]).catch(e => e as Error)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).name).not.toBe('ChunkIntegrityError')
    expect(String((err as Error).cause ?? (err as Error).message)).toMatch(/more than any chunk/)
  })
})

describe('a member queueing requests behind a chunk it does not read (libp2p)', () => {
  afterEach(cleanup)

  it('gets its stream reset once more than 16 MiB of requests wait on it, instead of the agent keeping them', { timeout: 60_000 }, async () => {
    const seed = await startAgent({ chunkSize: 4 * MiB })
    const image = await seedImage(seed, 4 * MiB)
    const member = await startAgent({ chunkSize: 4 * MiB, bootstrap: seed.mesh.multiaddrs })
    await fullyConnected([seed, member])
    const stream = await member.mesh.libp2p.dialProtocol(peerIdFromString(seed.mesh.peerId), CHUNK_PROTOCOL)
    stream.pause()
    const closed = new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }) })
    // It reads nothing (paused: no window for the seed's answers), so GETs of a 4 MiB chunk hold
    // the stream's answers back; then 1 MiB HAVE bodies.
    const cid = cidToBytes(image.manifest.cids[0])
    const have = encodeHaveRequest('k', { state: HAVE_NONE, bits: new Uint8Array(Math.ceil(29_000 / 8)) }, 29_000, 0, Buffer.concat(Array.from({ length: 29_000 }, () => cid)))
    const frames = [...Array.from({ length: 8 }, (_, i) => getFrame(cid, i + 1)), ...Array.from({ length: 40 }, (_, i) => getFrame(have, 100 + i, 2))]
    for (const f of frames) if (!stream.send(f)) await stream.onDrain({ signal: AbortSignal.timeout(10_000) }).catch(() => {})
    const ended = await Promise.race([closed.then(() => true), new Promise<boolean>(resolve => setTimeout(() => { resolve(false) }, 10_000))])
    expect(ended).toBe(true)
    stream.abort(new Error('done'))
  })
})
