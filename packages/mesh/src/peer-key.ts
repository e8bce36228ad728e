import { randomBytes } from 'node:crypto'
import { link, mkdir, open, readFile, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { PEER_KEY_FILE } from './constants.ts'

/**
 * The agent's libp2p identity: read from `<dataDir>/peer.key`, or made (Ed25519) and written there
 * on first start, so the peer id stays the same across restarts. The file holds the key in
 * libp2p's protobuf encoding and is readable by the owner only (0600).
 */
export async function loadOrCreatePeerKey (dataDir: string, name = PEER_KEY_FILE): Promise<PrivateKey> {
  const file = join(dataDir, name)
  try {
    return privateKeyFromProtobuf(await readFile(file))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read the peer key ${file}: ${(err as Error).message}`, { cause: err })
  }
  const key = await generateKeyPair('Ed25519')
  await writeKeyFile(file, privateKeyToProtobuf(key))
  // Two processes made a key at once (two agents on one dir, two `peerglance credential` runs with
  // one operator key): the first link won and both use that key.
  return privateKeyFromProtobuf(await readFile(file))
}

async function writeKeyFile (file: string, bytes: Uint8Array): Promise<void> {
  await mkdir(dirname(file), { recursive: true })
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`
  try {
    const handle = await open(tmp, 'wx', 0o600)
    try {
      await handle.writeFile(bytes)
      await handle.sync()
    } finally {
      await handle.close()
    }
    // link, not rename: it never replaces a key another process made meanwhile (rename did, and a
    // credential could then be signed by a key that was no longer the operator's).
    await link(tmp, file).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err })
    await rm(tmp, { force: true })
    const dir = await open(dirname(file), 'r')
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}
