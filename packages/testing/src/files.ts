import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'

/** A file of random bytes, written in 1 MiB pieces so big files cost no memory. */
export async function randomFile (path: string, size: number): Promise<void> {
  const file = await open(path, 'w')
  try {
    for (let left = size; left > 0; left -= 1024 * 1024) await file.write(randomBytes(Math.min(left, 1024 * 1024)))
  } finally {
    await file.close()
  }
}

async function digestFile (algo: string, path: string): Promise<string> {
  const hash = createHash(algo)
  for await (const part of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(part as Buffer)
  return hash.digest('hex')
}

export async function sha512File (path: string): Promise<string> { return await digestFile('sha512', path) }
export async function md5File (path: string): Promise<string> { return await digestFile('md5', path) }
