import { cidOf } from '@peerglance/interface'
import type { Manifest } from '@peerglance/interface'

/** The canonical bytes of a manifest: the same fields in the same order on every agent. */
export function encodeManifest (m: Manifest): Uint8Array {
  return Buffer.from(JSON.stringify({ size: m.size, chunkSize: m.chunkSize, cids: m.cids, md5: m.md5, sha512: m.sha512, staged: m.staged }))
}

export function decodeManifest (bytes: Uint8Array): Manifest {
  const m = JSON.parse(Buffer.from(bytes).toString('utf8')) as Manifest
  return { size: m.size, chunkSize: m.chunkSize, cids: m.cids, md5: m.md5, sha512: m.sha512, staged: m.staged }
}

/** Manifests are content-addressed like chunks: CIDv1, raw codec, sha2-256 of the canonical bytes. */
export function manifestCid (m: Manifest): string {
  return cidOf(encodeManifest(m))
}
