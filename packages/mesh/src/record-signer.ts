import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import type { RecordSigner } from '@peerglance/interface'

// DER prefixes that make a raw 32-byte Ed25519 key a PKCS#8 private / SPKI public key for node:crypto.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
/** Public keys kept ready; an agent verifies writes of the mesh's agents, about as many. */
const MAX_CACHED_KEYS = 4096

export interface PeerRecordSignerInit {
  /** The agent's libp2p identity (peer-key.ts): Ed25519. */
  key: PrivateKey
  /** Peer ids whose signatures no longer count (mesh.revokedPeers). */
  revoked?: readonly string[]
}

/**
 * Signs metadata writes with the agent's libp2p Ed25519 key and checks those of other agents,
 * whose public key is their peer id. Uses node:crypto KeyObjects made once per key, since a
 * catch-up verifies one signature per write it receives.
 */
export class PeerRecordSigner implements RecordSigner {
  readonly id: string
  readonly #revoked: Set<string>
  readonly #keys = new Map<string, KeyObject | null>()
  readonly #private: KeyObject

  constructor (init: PeerRecordSignerInit) {
    if (init.key.type !== 'Ed25519') throw new Error('record signing needs an Ed25519 peer key')
    this.#private = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, init.key.raw.subarray(0, 32)]), format: 'der', type: 'pkcs8' })
    this.id = peerIdFromPrivateKey(init.key).toString()
    this.#revoked = new Set(init.revoked ?? [])
  }

  sign (message: Uint8Array): string {
    return sign(null, message, this.#private).toString('base64')
  }

  verify (signer: string, message: Uint8Array, signature: string): boolean {
    if (this.#revoked.has(signer)) return false
    const key = this.#publicKey(signer)
    if (key == null) return false
    try {
      return verify(null, message, key, Buffer.from(signature, 'base64'))
    } catch {
      return false
    }
  }

  #publicKey (peer: string): KeyObject | null {
    let key = this.#keys.get(peer)
    if (key !== undefined) return key
    try {
      const publicKey = peerIdFromString(peer).publicKey
      key = publicKey?.type === 'Ed25519' ? createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey.raw]), format: 'der', type: 'spki' }) : null
    } catch {
      key = null
    }
    if (this.#keys.size >= MAX_CACHED_KEYS) this.#keys.delete(this.#keys.keys().next().value!)
    this.#keys.set(peer, key)
    return key
  }
}
