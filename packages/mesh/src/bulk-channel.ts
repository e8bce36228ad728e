/**
 * The bulk channel: the chunk exchange's frames over TLS 1.3 (node:tls, OpenSSL) between two mesh
 * members, beside their libp2p connection. On libp2p every byte of a chunk went through Noise in
 * JavaScript-driven 64 KiB frames, yamux and the stream machinery around them, which held the
 * swarm at ~17 CPU-s per GiB delivered (docs/benchmarks.md, issue 8); here OpenSSL encrypts a
 * 1 MiB chunk in one write.
 *
 * Who is on the other end is proven exactly as on libp2p:
 * - Each agent's certificate carries its libp2p Ed25519 identity key itself (self-signed, nothing
 *   else in it is trusted). TLS 1.3's CertificateVerify proves that the other side holds that
 *   private key; the peer id is derived from the certificate's public key. A dialler only accepts
 *   the peer id it meant to reach (learned over the authenticated libp2p connection); a listener
 *   requires a client certificate.
 * - Then the same membership credential as after the Noise handshake (membership.ts) goes each
 *   way, the dialler first, and is checked for that peer id (and the revocation list) before any
 *   frame is read. An outsider can complete neither, so it can neither fetch nor serve.
 *
 * A listener learns nothing from an agent that is not a member; a member learns the listener's
 * port the same way it could learn its libp2p address.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign, X509Certificate } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { connect, createServer } from 'node:tls'
import type { Server, TLSSocket } from 'node:tls'
import type { Socket } from 'node:net'
import { AsnConvert } from '@peculiar/asn1-schema'
import { AlgorithmIdentifier, AttributeTypeAndValue, AttributeValue, Certificate, Name, RelativeDistinguishedName, SubjectPublicKeyInfo, TBSCertificate, Validity, Version } from '@peculiar/asn1-x509'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import type { Logger, PeerId, PrivateKey } from '@libp2p/interface'
import type { Credential, Membership } from './membership.ts'
import type { Inbox } from './frame-stream.ts'
import { MembershipError } from './membership.ts'

const ED25519_OID = '1.3.101.112'
const COMMON_NAME_OID = '2.5.4.3'
/** A credential is a short JSON object (membership.ts allows 2 KiB on libp2p too). */
const MAX_CREDENTIAL_BYTES = 2048
/**
 * TLS handshake plus credentials, counted from the TCP connect; a peer that takes longer is
 * dropped. A deadline, not an idle timeout: a byte every few seconds must not hold a slot.
 */
const HANDSHAKE_TIMEOUT_MS = 10_000
/** Inbound bulk connections at once: a few per downloading peer. */
const MAX_CONNECTIONS = 1024
/** Connections in their handshake from one address: one host cannot hold every slot. */
const MAX_PENDING_PER_ADDRESS = 64
/** Proven connections of one member: a downloader opens `streamsPerPeer` (4). */
const MAX_CHANNELS_PER_PEER = 16

/** What proves this agent on the bulk channel: its TLS key and certificate, and its membership credential. */
export interface BulkAuth {
  /** PEM (PKCS #8) of the agent's libp2p Ed25519 key. */
  key: string
  cert: string
  own: Credential
  membership: Membership
}

/**
 * This agent's TLS key and certificate from its libp2p identity, or undefined when that key is not
 * Ed25519 (then the agent has no bulk channel and chunks stay on libp2p).
 */
export function bulkAuth (privateKey: PrivateKey, own: Credential, membership: Membership): BulkAuth | undefined {
  if (privateKey.type !== 'Ed25519') return undefined
  const jwk = {
    kty: 'OKP',
    crv: 'Ed25519',
    d: Buffer.from(privateKey.raw.subarray(0, 32)).toString('base64url'),
    x: Buffer.from(privateKey.publicKey.raw).toString('base64url')
  }
  const key = createPrivateKey({ key: jwk, format: 'jwk' })
  return { key: key.export({ format: 'pem', type: 'pkcs8' }) as string, cert: selfSigned(key), own, membership }
}

/** A self-signed X.509 certificate for an Ed25519 key: only its public key is ever looked at. */
function selfSigned (key: KeyObject): string {
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' })
  const algorithm = new AlgorithmIdentifier({ algorithm: ED25519_OID })
  const name = new Name([new RelativeDistinguishedName([new AttributeTypeAndValue({ type: COMMON_NAME_OID, value: new AttributeValue({ utf8String: 'peerglance' }) })])])
  // A DER INTEGER is positive and minimal: a first byte of 0x01-0x7f is both. (0x00 before a
  // byte below 0x80 is "illegal padding" to OpenSSL: one agent in 256 failed to start with it.)
  const serial = randomBytes(8)
  serial[0] = 0x40 | (serial[0] & 0x3f)
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: toArrayBuffer(serial),
    signature: algorithm,
    issuer: name,
    subject: name,
    validity: new Validity({ notBefore: new Date('2000-01-01T00:00:00Z'), notAfter: new Date('9999-12-31T23:59:59Z') }),
    subjectPublicKeyInfo: AsnConvert.parse(spki, SubjectPublicKeyInfo)
  })
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs))
  const signature = sign(null, tbsDer, key)
  const der = Buffer.from(AsnConvert.serialize(new Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: toArrayBuffer(signature) })))
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`
}

function toArrayBuffer (bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
}

/** The peer id whose key the other side's certificate holds (and, TLS 1.3 proved, its private key). */
export function peerOfSocket (socket: TLSSocket): PeerId {
  const cert: X509Certificate | undefined = socket.getPeerX509Certificate()
  if (cert == null) throw new MembershipError('the peer showed no certificate')
  const publicKey = cert.publicKey
  if (publicKey.asymmetricKeyType !== 'ed25519') throw new MembershipError('the peer\'s certificate does not hold an Ed25519 key')
  const { x } = publicKey.export({ format: 'jwk' })
  return peerIdFromPublicKey(publicKeyFromRaw(Buffer.from(x ?? '', 'base64url')))
}

const tlsOptions = (auth: BulkAuth): { key: string, cert: string, minVersion: 'TLSv1.3', allowHalfOpen: boolean } =>
  ({ key: auth.key, cert: auth.cert, minVersion: 'TLSv1.3', allowHalfOpen: true })

/** The buffer a dialled channel reads into, when it is given an inbox: a TLS record is at most 16 KiB. */
const READ_BUFFER_BYTES = 64 * 1024

/**
 * A TLS connection to `expected` at host:port, proven both ways (see the top of this file). The
 * socket is paused: the caller attaches its reader, then resumes it. With `inbox`, the socket
 * reads into one buffer and hands the bytes to the inbox's reader instead of emitting 'data'.
 */
export async function dialBulk (host: string, port: number, expected: PeerId, auth: BulkAuth, signal?: AbortSignal, inbox?: Inbox): Promise<TLSSocket> {
  const socket = connect({
    host,
    port,
    ...(inbox != null ? { onread: inbox.onread(READ_BUFFER_BYTES) } : {}),
    ...tlsOptions(auth),
    // The certificate is self-signed on purpose: who it belongs to is checked below, by peer id.
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined
  })
  const giveUp = (): void => { socket.destroy(new MembershipError('bulk dial aborted')) }
  signal?.addEventListener('abort', giveUp, { once: true })
  const deadline = setTimeout(() => { socket.destroy(new MembershipError('bulk handshake timed out')) }, HANDSHAKE_TIMEOUT_MS)
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve)
      socket.once('error', reject)
      socket.once('close', () => { reject(new MembershipError('bulk connection closed during the handshake')) })
    })
    const peer = peerOfSocket(socket)
    if (!peer.equals(expected)) throw new MembershipError(`bulk channel at ${host}:${port} belongs to ${peer.toString()}, not ${expected.toString()}`)
    writeCredential(socket, auth.own)
    const why = await auth.membership.refusal(await readCredential(socket, inbox), peer)
    if (why != null) throw new MembershipError(`peer ${peer.toString()} is not a mesh member: ${why}`)
    return socket
  } catch (err) {
    socket.destroy()
    throw err
  } finally {
    clearTimeout(deadline)
    signal?.removeEventListener('abort', giveUp)
  }
}

/**
 * The listening side: accepts TLS connections, proves them (see the top of this file) and hands
 * each one to `onChannel` with the member's peer id, paused. Anything else is closed at once.
 */
export class BulkListener {
  readonly #server: Server
  readonly #log: Logger
  /** Every TCP connection, proven or still in its handshake: close() ends them all. */
  readonly #sockets = new Set<Socket>()
  /** Each connection not proven yet (by remote address and port): its address and deadline. */
  readonly #pending = new Map<string, { address: string, deadline: NodeJS.Timeout }>()
  readonly #pendingPerAddress = new Map<string, number>()
  readonly #channelsPerPeer = new Map<string, number>()

  constructor (auth: BulkAuth, log: Logger, onChannel: (socket: TLSSocket, peer: PeerId) => void, onRefused: () => void = () => {}) {
    this.#log = log
    this.#server = createServer({ ...tlsOptions(auth), requestCert: true, rejectUnauthorized: false, handshakeTimeout: HANDSHAKE_TIMEOUT_MS }, socket => {
      void this.#admit(socket, auth).then(peer => {
        if (peer != null) onChannel(socket, peer)
        else onRefused()
      })
    })
    this.#server.on('connection', (raw: Socket) => {
      const address = raw.remoteAddress ?? ''
      if ((this.#pendingPerAddress.get(address) ?? 0) >= MAX_PENDING_PER_ADDRESS) {
        raw.destroy()
        return
      }
      const key = endpoint(raw)
      count(this.#pendingPerAddress, address, 1)
      this.#pending.set(key, { address, deadline: setTimeout(() => { raw.destroy() }, HANDSHAKE_TIMEOUT_MS) })
      this.#sockets.add(raw)
      raw.once('close', () => {
        this.#proven(key)
        this.#sockets.delete(raw)
      })
    })
    this.#server.maxConnections = MAX_CONNECTIONS
    // Failed handshakes (an outsider, a port scanner) are routine: count, log, never crash.
    this.#server.on('tlsClientError', err => {
      onRefused()
      log('bulk handshake failed - %e', err)
    })
  }

  /** Listens on host:port (0: any free port) and returns the port. */
  async listen (host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject)
        resolve()
      })
    })
    this.#server.on('error', err => { this.#log.error('bulk listener failed - %e', err) })
    const address = this.#server.address()
    return typeof address === 'object' && address != null ? address.port : port
  }

  /** Stops listening and ends every connection still open. */
  async close (): Promise<void> {
    const closed = new Promise<void>(resolve => { this.#server.close(() => { resolve() }) })
    for (const socket of this.#sockets) socket.destroy()
    await closed
  }

  /** The connection is proven, or gone: its handshake no longer counts against its address. */
  #proven (key: string): void {
    const pending = this.#pending.get(key)
    if (pending == null) return
    this.#pending.delete(key)
    clearTimeout(pending.deadline)
    count(this.#pendingPerAddress, pending.address, -1)
  }

  async #admit (socket: TLSSocket, auth: BulkAuth): Promise<PeerId | undefined> {
    socket.on('error', () => {})
    try {
      const peer = peerOfSocket(socket)
      if (auth.membership.isRevoked(peer)) throw new MembershipError(`peer ${peer.toString()} is revoked`)
      const why = await auth.membership.refusal(await readCredential(socket), peer)
      if (why != null) throw new MembershipError(`peer ${peer.toString()} is not a mesh member: ${why}`)
      const member = peer.toString()
      const channels = this.#channelsPerPeer.get(member) ?? 0
      if (channels >= MAX_CHANNELS_PER_PEER) throw new MembershipError(`peer ${member} holds ${channels} bulk connections already`)
      count(this.#channelsPerPeer, member, 1)
      socket.once('close', () => { count(this.#channelsPerPeer, member, -1) })
      writeCredential(socket, auth.own)
      this.#proven(endpoint(socket))
      return peer
    } catch (err) {
      this.#log('bulk connection from %s refused - %e', socket.remoteAddress, err)
      socket.destroy()
      return undefined
    }
  }
}

const endpoint = (socket: Socket): string => `${socket.remoteAddress}|${socket.remotePort}`

/** Adds `delta` to a count kept per key; a count that reaches 0 goes. */
function count (counts: Map<string, number>, key: string, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta
  if (n > 0) counts.set(key, n)
  else counts.delete(key)
}

function writeCredential (socket: TLSSocket, own: Credential): void {
  const body = Buffer.from(JSON.stringify(own))
  const head = Buffer.alloc(2)
  head.writeUInt16BE(body.byteLength)
  socket.write(Buffer.concat([head, body]))
}

/**
 * The other side's credential (u16 BE length, JSON); leaves the socket paused after it, and what
 * came after it unread (in the inbox when the socket reads into one).
 */
async function readCredential (socket: TLSSocket, inbox?: Inbox): Promise<unknown> {
  return await new Promise((resolve, reject) => {
    let got = Buffer.alloc(0)
    const finish = (err: Error | undefined, value?: unknown, rest?: Buffer): void => {
      if (inbox != null) inbox.stop(rest)
      else socket.off('data', onData)
      socket.off('close', onClose)
      socket.off('end', onClose)
      socket.pause()
      if (rest != null && rest.byteLength > 0 && inbox == null) socket.unshift(rest)
      if (err != null) reject(err)
      else resolve(value)
    }
    const onClose = (): void => { finish(new MembershipError('the peer closed the connection before its credential')) }
    socket.once('end', onClose)
    const onData = (data: Buffer): void => {
      got = Buffer.concat([got, data])
      if (got.byteLength < 2) return
      const length = got.readUInt16BE(0)
      if (length > MAX_CREDENTIAL_BYTES) {
        finish(new MembershipError('credential too long'))
        return
      }
      if (got.byteLength < 2 + length) return
      const rest = got.subarray(2 + length)
      let value: unknown
      try {
        value = JSON.parse(got.subarray(2, 2 + length).toString('utf8'))
      } catch {
        value = undefined
      }
      finish(undefined, value, rest)
    }
    if (inbox != null) inbox.read(onData)
    else socket.on('data', onData)
    socket.on('close', onClose)
  })
}
