import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'

// A CIDv1 of a raw sha2-256 block is 36 bytes; in base32 that is 'b' plus 58 characters. Accepting
// nothing else also keeps names that reach the file system free of separators and dots.
const CHUNK_CID = /^b[a-z2-7]{58}$/

/** The chunk name for these bytes: CIDv1, raw codec, sha2-256, base32. */
export function cidOf (bytes: Uint8Array): string {
  // node:crypto uses SHA-NI; it is ~4x faster than any JS or wasm sha256 (REPORT.md section 5).
  return cidFromSha256(createHash('sha256').update(bytes).digest())
}

export function cidFromSha256 (digest: Uint8Array): string {
  return CID.createV1(raw.code, create(sha256.code, digest)).toString()
}

export function isChunkCid (value: unknown): value is string {
  return typeof value === 'string' && CHUNK_CID.test(value)
}
