import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'

/** Chunks are CIDv1, raw codec, sha2-256: 36 bytes, 'b' + 58 base32 characters as text. */
export const CID_BYTES = 36
const CHUNK_CID = /^b[a-z2-7]{58}$/
const RAW = 0x55
const SHA2_256 = 0x12

export function isChunkCid (value: unknown): value is string {
  return typeof value === 'string' && CHUNK_CID.test(value)
}

export function cidToBytes (cid: string): Uint8Array {
  const bytes = CID.parse(cid).bytes
  if (bytes.byteLength !== CID_BYTES) throw new RangeError(`${cid} is not a chunk CID`)
  return bytes
}

export function cidFromBytes (bytes: Uint8Array): string {
  return CID.decode(bytes).toString()
}

/** The sha2-256 digest a CID names; throws for any other hash. */
export function sha256DigestOf (cid: string): Uint8Array {
  const { multihash } = CID.parse(cid)
  if (multihash.code !== SHA2_256) throw new RangeError(`${cid} does not name a sha2-256 digest`)
  return multihash.digest
}

export function isRawSha256 (cid: string): boolean {
  try {
    const parsed = CID.parse(cid)
    return parsed.version === 1 && parsed.code === RAW && parsed.multihash.code === SHA2_256
  } catch {
    return false
  }
}

export function sha256 (bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest()
}

export function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)
}
