import { createHash } from 'node:crypto'
import type { Replica, ReplicatedRecord } from '@peerglance/interface'

/** `kind!key`: a record's identity in digests and sync frames. */
export function slotOf (record: ReplicatedRecord): string {
  return `${record.kind}!${record.key}`
}

/**
 * What a record holds, as 16 bytes (base64url): a hash of every field's name, clock and removal
 * mark. Two copies of a record are equal exactly when their fingerprints are (a clock names one
 * write, so it fixes the value). The record's latest clock is not enough: a copy that merged a
 * newer write of one field can still miss an older write of another.
 */
export function fingerprintOf (record: ReplicatedRecord): string {
  const hash = createHash('sha256')
  for (const name of Object.keys(record.fields).sort()) {
    const field = record.fields[name]
    hash.update(`${name}\0${field.c}\0${field.d === true ? 1 : 0}\n`)
  }
  return hash.digest().subarray(0, 16).toString('base64url')
}

/**
 * The replica summed up: a fingerprint per record and a root over all of them (the XOR of each
 * record's sha256(slot, fingerprint), so one change updates it in O(1)). Two agents whose roots
 * are equal hold the same records, and anti-entropy between them stops after one round trip.
 */
export class StateDigest {
  readonly #replica: Replica
  readonly #fingerprints = new Map<string, string>()
  readonly #root = Buffer.alloc(32)

  constructor (replica: Replica) {
    this.#replica = replica
    for (const record of replica.records()) this.update(record)
  }

  /** Call with the stored copy after every change to it. */
  update (record: ReplicatedRecord): void {
    const slot = slotOf(record)
    const before = this.#fingerprints.get(slot)
    const after = fingerprintOf(record)
    if (before === after) return
    if (before != null) xorInto(this.#root, leaf(slot, before))
    xorInto(this.#root, leaf(slot, after))
    this.#fingerprints.set(slot, after)
  }

  get size (): number {
    return this.#fingerprints.size
  }

  /** The root and the record count, as one string. */
  get root (): string {
    return `${this.#fingerprints.size}:${this.#root.toString('base64url')}`
  }

  /**
   * 32 bits of the root (and the count): what a ping carries (liveness.ts). Equal tags mean equal
   * roots but for one chance in 2^32, which metadata-sync.ts's backstop sync covers.
   */
  get tag (): number {
    return (this.#root.readUInt32BE(0) ^ this.#fingerprints.size) >>> 0
  }

  fingerprint (slot: string): string | undefined {
    return this.#fingerprints.get(slot)
  }

  entries (): Iterable<[string, string]> {
    return this.#fingerprints.entries()
  }

  get (slot: string): ReplicatedRecord | undefined {
    const at = slot.indexOf('!')
    return this.#replica.get(slot.slice(0, at) as ReplicatedRecord['kind'], slot.slice(at + 1))
  }
}

function leaf (slot: string, fingerprint: string): Buffer {
  return createHash('sha256').update(slot).update('\0').update(fingerprint).digest()
}

function xorInto (into: Buffer, from: Buffer): void {
  for (let i = 0; i < into.length; i++) into[i] ^= from[i]
}
