import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const NONCE_BYTES = 12
const TAG_BYTES = 16
/** Bytes a sealed chunk file holds beyond the chunk: nonce before, GCM tag after. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES

/**
 * Encryption at rest: a chunk file is `nonce ‖ AES-256-GCM(chunk) ‖ tag`, with the chunk's CID
 * as associated data, so a file changed on disk, or moved under another chunk's name, fails to
 * open. CIDs stay over the plaintext: peers and dedup see the same chunks either way. A random
 * nonce per file; one key seals at most ~2^32 files before nonce reuse becomes plausible.
 */
export class ChunkSealer {
  readonly #key: Buffer
  /** Names the key without revealing it. */
  readonly fingerprint: string

  constructor (key: Uint8Array) {
    if (key.byteLength !== 32) throw new RangeError(`the chunk encryption key must be 32 bytes, not ${key.byteLength}`)
    this.#key = Buffer.from(key)
    this.fingerprint = createHmac('sha256', this.#key).update('peerglance chunk key fingerprint').digest('hex').slice(0, 16)
  }

  /** Reads a key file: 32 raw bytes, or 64 hex digits (as `openssl rand -hex 32` prints them). */
  static async fromFile (file: string): Promise<ChunkSealer> {
    const bytes = await readFile(file)
    const text = bytes.toString('utf8').trim()
    return new ChunkSealer(/^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : bytes)
  }

  seal (cid: string, chunk: Uint8Array): Buffer {
    const nonce = randomBytes(NONCE_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce)
    cipher.setAAD(Buffer.from(cid))
    const body = cipher.update(chunk)
    cipher.final()
    return Buffer.concat([nonce, body, cipher.getAuthTag()], NONCE_BYTES + body.byteLength + TAG_BYTES)
  }

  /** The chunk, or undefined when the file is not what was sealed under this CID. */
  open (cid: string, sealed: Uint8Array): Buffer | undefined {
    if (sealed.byteLength < SEAL_OVERHEAD) return undefined
    const view = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength)
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, view.subarray(0, NONCE_BYTES))
      decipher.setAAD(Buffer.from(cid))
      decipher.setAuthTag(view.subarray(view.byteLength - TAG_BYTES))
      const chunk = decipher.update(view.subarray(NONCE_BYTES, view.byteLength - TAG_BYTES))
      decipher.final()
      return chunk
    } catch {
      return undefined
    }
  }
}

const MARKER = 'sealed'

/**
 * Keeps the store's files and its configuration in step: `<dir>/sealed` names the key the files
 * are sealed with (a fingerprint). Plaintext reads of sealed files would serve ciphertext as image
 * bytes, and a wrong key would drop every chunk, so both refuse to start instead.
 */
export async function checkSealing (dir: string, sealer: ChunkSealer | undefined): Promise<void> {
  const file = join(dir, MARKER)
  let recorded: string | undefined
  try {
    recorded = (await readFile(file, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (sealer == null) {
    if (recorded != null) throw new Error(`the chunk files in ${dir} are encrypted: set chunks.encryptionKeyFile to their key`)
    return
  }
  if (recorded != null && recorded !== sealer.fingerprint) throw new Error(`the chunk files in ${dir} are encrypted with another key (fingerprint ${recorded})`)
  // Plaintext files from before encryption was turned on fail to open, are dropped and fetched again.
  if (recorded == null) await writeFile(file, `${sealer.fingerprint}\n`)
}
