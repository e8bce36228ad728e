/**
 * Noise's length prefixes, read without an exception per socket read. @chainsafe/libp2p-noise
 * reads its 2-byte prefixes with a LengthPrefixedDecoder (@libp2p/utils) whose length function
 * throws a RangeError when fewer than two bytes are left, which the decoder takes as "wait for
 * more": that happens at the end of every read, and V8 captures a stack trace for each error
 * (deoptimising the frames to name them). In perf of the shaped swarm that was 2.4 % of a
 * downloader's main thread (docs/benchmarks.md, issue 8). The same decoder stops waiting without
 * an exception when the length it is given says the frame is not all there yet: a prefix not all
 * there reads as a frame of length 0, which needs 2 bytes.
 */
import type { Uint8ArrayList } from 'uint8arraylist'

/** What the decoder of noise's connection looks like, as far as this file relies on it. */
interface LengthDecoding {
  lengthDecoder?: (data: Uint8Array | Uint8ArrayList) => number
}

/** The 2-byte big-endian length of the next Noise message, or 0 while its prefix is not all there (never throws). */
export function noiseLength (data: Uint8Array | Uint8ArrayList): number {
  if (data.byteLength < 2) return 0
  return data instanceof Uint8Array ? (data[0] << 8) | data[1] : data.getUint16(0)
}

/**
 * Makes Noise's secured connection read its length prefixes with `noiseLength`. Returns false
 * when the connection is not built the way this expects (another noise version): it then keeps
 * its own decoder, which is correct, only dearer.
 */
export function readNoiseLengthsQuietly (connection: unknown): boolean {
  const decoder = (connection as { decoder?: LengthDecoding } | undefined)?.decoder
  if (decoder == null || typeof decoder.lengthDecoder !== 'function') return false
  decoder.lengthDecoder = noiseLength
  return true
}
