import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import type { NoiseInit } from '@chainsafe/libp2p-noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { ConnectionEncrypter, ConnectionGater, MessageStream, PeerId, PrivateKey, SecureConnectionOptions, SecuredConnection } from '@libp2p/interface'
import { readNoiseLengthsQuietly } from './noise-lengths.ts'

/**
 * Who belongs to the mesh. Every agent proves membership right after the Noise handshake, inside
 * the encrypted channel and before any protocol (identify, gossip, sync, chunks) is negotiated:
 * it sends a credential naming its own peer id, which Noise has just authenticated. A peer
 * without a valid one is disconnected before it can ask or learn anything.
 *
 * Credentials are either
 * - minted by each agent from the mesh secret (HMAC-SHA256 under a key derived from it): simple,
 *   but whoever holds the secret can mint one for a fresh peer id, so a leaked secret is revoked
 *   by rotating it; or
 * - signed by an operator's Ed25519 key (`operator` is that key's libp2p peer id): agents hold
 *   only their own credential, so revoking one peer id (`revoked`) shuts it out for good.
 */
export interface MembershipInit {
  /** The mesh secret. Empty is only safe on loopback (the agent refuses otherwise). */
  secret?: string
  /** Peer id of the operator's Ed25519 key; when set, only credentials it signed are accepted. */
  operator?: string
  /** File holding this agent's credential, as `peerglance credential` prints it (operator mode). */
  credentialFile?: string
  /** Peer ids refused whatever credential they show. */
  revoked?: readonly string[]
}

/** What an agent shows: its peer id, an expiry (ms since the epoch, 0 for none) and a signature. */
export interface Credential {
  peer: string
  exp: number
  /** 'hmac' (mesh secret) or 'operator' (Ed25519, base64). */
  alg: 'hmac' | 'operator'
  sig: string
}

export const MEMBERSHIP_ENCRYPTER = '/peerglance/noise-member/1.0.0'
const MAX_CREDENTIAL_BYTES = 2048

export class MembershipError extends Error {
  override name = 'MembershipError'
}

export function credentialMessage (peer: string, exp: number): Uint8Array {
  return Buffer.from(`peerglance/member/1\n${peer}\n${exp}`)
}

function secretKey (secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'peerglance', 'mesh membership credential', 32))
}

/** A credential from the mesh secret, for this agent's own peer id. */
export function mintCredential (secret: string, peer: string, exp = 0): Credential {
  return { peer, exp, alg: 'hmac', sig: createHmac('sha256', secretKey(secret)).update(credentialMessage(peer, exp)).digest('base64') }
}

/** Checks credentials against the configured authority and revocation list. */
export class Membership {
  readonly #hmacKey: Buffer | undefined
  readonly #operator: PeerId | undefined
  readonly #revoked: Set<string>

  constructor (init: MembershipInit) {
    this.#operator = init.operator == null || init.operator === '' ? undefined : peerIdFromString(init.operator)
    if (this.#operator != null && this.#operator.publicKey?.type !== 'Ed25519') throw new MembershipError('mesh.operatorKey must be the peer id of an Ed25519 key')
    this.#hmacKey = this.#operator == null ? secretKey(init.secret ?? '') : undefined
    this.#revoked = new Set(init.revoked ?? [])
  }

  isRevoked (peer: PeerId | string): boolean {
    return this.#revoked.has(peer.toString())
  }

  /** Why the credential does not admit `peer`, or undefined when it does. */
  async refusal (credential: unknown, peer: PeerId, now = Date.now()): Promise<string | undefined> {
    if (credential == null || typeof credential !== 'object') return 'no credential'
    const { peer: named, exp, alg, sig } = credential as Partial<Credential>
    if (typeof named !== 'string' || typeof exp !== 'number' || typeof sig !== 'string') return 'malformed credential'
    if (named !== peer.toString()) return 'credential names another peer'
    if (exp !== 0 && exp < now) return 'credential expired'
    if (this.isRevoked(peer)) return 'peer revoked'
    const message = credentialMessage(named, exp)
    if (this.#operator != null) {
      if (alg !== 'operator') return 'credential not signed by the operator'
      const ok = await this.#operator.publicKey!.verify(message, Buffer.from(sig, 'base64'))
      return ok ? undefined : 'bad operator signature'
    }
    if (alg !== 'hmac') return 'credential not from the mesh secret'
    const expected = createHmac('sha256', this.#hmacKey!).update(message).digest()
    const given = Buffer.from(sig, 'base64')
    return given.length === expected.length && timingSafeEqual(given, expected) ? undefined : 'bad credential'
  }

  /** Denies revoked peers at every point libp2p asks. */
  gater (): ConnectionGater {
    const deny = (peer: PeerId): boolean => this.isRevoked(peer)
    return { denyDialPeer: deny, denyInboundEncryptedConnection: deny, denyOutboundEncryptedConnection: deny }
  }
}

/**
 * Noise, then one credential each way inside it: the dialler speaks first, so a listener never
 * shows its credential to a peer that has not shown one. Any failure ends the connection before
 * a muxer (and so any protocol) exists.
 */
class MemberEncrypter implements ConnectionEncrypter {
  readonly protocol = MEMBERSHIP_ENCRYPTER
  readonly #noise: ConnectionEncrypter
  readonly #membership: Membership
  readonly #own: Uint8Array

  constructor (inner: ConnectionEncrypter, membership: Membership, own: Credential) {
    this.#noise = inner
    this.#membership = membership
    this.#own = Buffer.from(JSON.stringify(own))
  }

  async secureOutbound (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
    const secured = await this.#noise.secureOutbound(connection, options)
    return await this.#prove(secured, true, options)
  }

  async secureInbound (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
    const secured = await this.#noise.secureInbound(connection, options)
    return await this.#prove(secured, false, options)
  }

  async #prove (secured: SecuredConnection, first: boolean, options?: SecureConnectionOptions): Promise<SecuredConnection> {
    readNoiseLengthsQuietly(secured.connection)
    const lp = lpStream(secured.connection, { maxDataLength: MAX_CREDENTIAL_BYTES })
    try {
      if (first) await lp.write(this.#own, options)
      let theirs: unknown
      try {
        theirs = JSON.parse(Buffer.from((await lp.read(options)).subarray()).toString('utf8'))
      } catch (err) {
        if (options?.signal?.aborted === true) throw err
        theirs = undefined
      }
      const why = await this.#membership.refusal(theirs, secured.remotePeer)
      if (why != null) throw new MembershipError(`peer ${secured.remotePeer.toString()} is not a mesh member: ${why}`)
      if (!first) await lp.write(this.#own, options)
    } catch (err) {
      secured.connection.abort(err as Error)
      throw err
    }
    return { ...secured, connection: lp.unwrap() }
  }
}

/** The connection encrypter every agent uses: Noise with a membership proof. */
export function memberNoise (membership: Membership, own: Credential, init: NoiseInit = {}): (components: any) => ConnectionEncrypter {
  const inner = noise(init)
  return (components) => new MemberEncrypter(inner(components), membership, own)
}

/** A credential signed by the operator's key for `peer`, valid until `exp` (ms; 0: no expiry). */
export async function issueCredential (operatorKey: PrivateKey, peer: string, exp: number): Promise<Credential> {
  if (operatorKey.type !== 'Ed25519') throw new MembershipError('the operator key must be Ed25519')
  peerIdFromString(peer)
  const sig = await operatorKey.sign(credentialMessage(peer, exp))
  return { peer, exp, alg: 'operator', sig: Buffer.from(sig).toString('base64') }
}
