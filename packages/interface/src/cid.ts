import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'

// Chunks and manifests are named alike: CIDv1, raw codec, sha2-256, in base32 ('b' and 58
// characters, 36 bytes). The one definition the chunk store, the metadata store and the mesh share.

export const CID_BYTES = 36
// Accepting nothing else also keeps names that reach the file system free of separators and dots.
const CHUNK_CID = /^b[a-z2-7]{58}$/

/** The CID naming these bytes. */
export function cidOf (bytes: Uint8Array): string {
  // node:crypto uses SHA-NI; it is ~4x faster than any JS or wasm sha256 (p2p-perf REPORT.md §5).
  return cidFromSha256(createHash('sha256').update(bytes).digest())
}

export function cidFromSha256 (digest: Uint8Array): string {
  return CID.createV1(raw.code, create(sha256.code, digest)).toString()
}

export function isChunkCid (value: unknown): value is string {
  return typeof value === 'string' && CHUNK_CID.test(value)
}

/** The sha2-256 digest a CID names; RangeError for any other hash. */
export function sha256DigestOf (cid: string): Uint8Array {
  const { multihash } = CID.parse(cid)
  if (multihash.code !== sha256.code) throw new RangeError(`${cid} does not name a sha2-256 digest`)
  return multihash.digest
}

/** The CID's binary form, as the chunk protocol sends it. */
export function cidToBytes (cid: string): Uint8Array {
  const bytes = CID.parse(cid).bytes
  if (bytes.byteLength !== CID_BYTES) throw new RangeError(`${cid} is not a chunk CID`)
  return bytes
}

export function cidFromBytes (bytes: Uint8Array): string {
  return CID.decode(bytes).toString()
}
