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

/**
 * The sha2-256 digest a CID names; RangeError for any other hash. Shared with other callers (the
 * CIDs parsed lately are kept): read it, never write to it.
 */
export function sha256DigestOf (cid: string): Uint8Array {
  const { multihash } = parsed(cid)
  if (multihash.code !== sha256.code) throw new RangeError(`${cid} does not name a sha2-256 digest`)
  return multihash.digest
}

/** The CID's binary form, as the chunk protocol sends it. Shared, as sha256DigestOf's digest is. */
export function cidToBytes (cid: string): Uint8Array {
  const bytes = parsed(cid).bytes
  if (bytes.byteLength !== CID_BYTES) throw new RangeError(`${cid} is not a chunk CID`)
  return bytes
}

export function cidFromBytes (bytes: Uint8Array): string {
  const key = latin1(bytes)
  let cid = named.get(key)
  if (cid == null) {
    const found = CID.decode(bytes)
    cid = found.toString()
    keep(named, key, cid)
    keep(byString, cid, found)
  }
  return cid
}

/**
 * CIDs parsed lately, both ways (a string parsed is known by its bytes too, and bytes decoded by
 * their string). A chunk's CID is parsed 5 to 8 times on its way through an agent (listed in a
 * HAVE, asked for, verified, stored, looked up, served), and multiformats takes 7-10 us a parse in
 * code that runs too rarely to be optimised: 1.5-2.5 % of a downloader's main thread in the swarm
 * (docs/benchmarks.md, issue 8, "js"). A few hundred KB at most.
 */
const KEPT = 1024
const byString = new Map<string, CID>()
/** CID strings by their binary form (as latin1). */
const named = new Map<string, string>()

function parsed (cid: string): CID {
  let found = byString.get(cid)
  if (found == null) {
    found = CID.parse(cid)
    keep(byString, cid, found)
    // Bytes name the CID's canonical string, not a spelling of it in another base that was parsed.
    keep(named, latin1(found.bytes), found.toString())
  }
  return found
}

function latin1 (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}

function keep<V> (map: Map<string, V>, key: string, value: V): void {
  if (map.size >= KEPT) map.delete(map.keys().next().value as string)
  map.set(key, value)
}
