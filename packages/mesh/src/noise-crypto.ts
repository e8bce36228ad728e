import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { Uint8ArrayList } from 'uint8arraylist'

const CHACHA = 'chacha20-poly1305'
const TAG = 16
/** Below this, @chainsafe/libp2p-noise's own choice (its wasm ChaCha20-Poly1305) is faster. */
const NODE_MIN = 1200

/**
 * Noise's default node:crypto ChaCha20-Poly1305, minus the per-frame costs that showed in the
 * profile (docs/benchmarks.md, "The mesh"): the 32-byte key was imported into a new KeyObject for every
 * 64 KiB frame, and each sealed frame was copied once more to append the tag. Here each
 * CipherState's key becomes one KeyObject (cached on the key's Uint8Array, which noise keeps
 * for the life of the session), and the tag travels as its own buffer in a Uint8ArrayList.
 * Same cipher, same wire format: peers running the stock noise interoperate.
 */
const keys = new WeakMap<Uint8Array, KeyObject>()

function keyObject (k: Uint8Array): KeyObject {
  let key = keys.get(k)
  if (key == null) {
    key = createSecretKey(k)
    keys.set(k, key)
  }
  return key
}

type Encrypt = ICryptoInterface['chaCha20Poly1305Encrypt']
type Decrypt = ICryptoInterface['chaCha20Poly1305Decrypt']

// Noise is typed against uint8arraylist 2 and we build lists with 3; both versions recognise
// each other's lists at run time (one Symbol.for brand), hence the casts.
const encrypt = function (plaintext: Parameters<Encrypt>[0], nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Uint8Array | Uint8ArrayList {
  if (plaintext.byteLength < NODE_MIN) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) as Uint8Array
  const cipher = createCipheriv(CHACHA, keyObject(k), nonce, { authTagLength: TAG })
  cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
  const output = new Uint8ArrayList()
  if (plaintext instanceof Uint8Array) output.append(cipher.update(plaintext))
  else for (const buf of plaintext as unknown as Uint8ArrayList) output.append(cipher.update(buf))
  const final = cipher.final()
  if (final.byteLength > 0) output.append(final)
  output.append(cipher.getAuthTag())
  return output
} as unknown as Encrypt

const decrypt = function (ciphertext: Parameters<Decrypt>[0], nonce: Uint8Array, ad: Uint8Array, k: Uint8Array, dst?: Uint8Array): Uint8Array | Uint8ArrayList {
  if (ciphertext.byteLength < NODE_MIN) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) as Uint8Array
  const length = ciphertext.byteLength - TAG
  const decipher = createDecipheriv(CHACHA, keyObject(k), nonce, { authTagLength: TAG })
  decipher.setAAD(ad, { plaintextLength: length })
  if (ciphertext instanceof Uint8Array) {
    decipher.setAuthTag(ciphertext.subarray(length))
    const output = decipher.update(ciphertext.subarray(0, length))
    const final = decipher.final()
    return final.byteLength > 0 ? new Uint8ArrayList(output, final) : output
  }
  decipher.setAuthTag((ciphertext as unknown as Uint8ArrayList).subarray(length))
  const output = new Uint8ArrayList()
  for (const buf of (ciphertext as unknown as Uint8ArrayList).sublist(0, length)) output.append(decipher.update(buf))
  const final = decipher.final()
  if (final.byteLength > 0) output.append(final)
  return output
} as unknown as Decrypt

export const fastNoiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt: encrypt,
  chaCha20Poly1305Decrypt: decrypt
}
