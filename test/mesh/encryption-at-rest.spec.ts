import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { meshOf, waitFor } from '@peerglance/testing'
import type { TestMesh } from '@peerglance/testing'
import { chunkFiles, configFile, download, glance, logsMatching, meshPerTest, sha512 } from './helpers.ts'

const { set: track, dirs } = meshPerTest()
let mesh: TestMesh

describe('chunk files encrypted at rest', () => {
  it('hold no plaintext; a chunk file changed on disk is dropped and fetched again, and the client gets the right bytes', async () => {
    const keyDir = await configFile('', dirs)
    const keyFile = join(keyDir, '..', 'chunk.key')
    await writeFile(keyFile, randomBytes(32).toString('hex'))
    const config = await configFile(`chunks:\n  encryptionKeyFile: ${keyFile}\n`, dirs)
    mesh = track(await meshOf(2, { argsOf: () => ['--config', config] }))
    const [a, b] = mesh.agents
    const bytes = randomBytes(6 * 1024 * 1024)
    const { id } = await glance(a.url).create({ name: 'sealed' })
    await glance(a.url).upload(id, bytes)
    await waitFor(async () => (await glance(b.url).find(id))?.status === 'active', { what: 'B seeing the image' })
    expect((await download(b.url, `/v2/images/${id}/file`)).sha512).toBe(sha512(bytes))

    const files = await waitFor(async () => { const f = await chunkFiles(b.dataDir); return f.length === 6 && f }, { what: 'B keeping the 6 chunks' })
    for (const [, path] of files) expect((await readFile(path)).includes(bytes.subarray(0, 32))).toBe(false)
    // Flip one byte of B's third chunk file.
    const [cid, path] = files.sort()[2]
    const sealed = await readFile(path)
    sealed[sealed.length >> 1] ^= 0x40
    await writeFile(path, sealed)

    const again = await download(b.url, `/v2/images/${id}/file`)
    expect(again.error).toBeUndefined()
    expect(again.status).toBe(200)
    expect(again.sha512).toBe(sha512(bytes))
    // The agent's log lines reach this process through a pipe, a moment after the response.
    await waitFor(() => logsMatching(b.logs, 'a chunk file changed on disk').some(l => l.cid === cid), { what: 'the drop logged' })
    // The chunk was fetched again from A and sealed anew.
    await waitFor(async () => (await chunkFiles(b.dataDir)).some(([c]) => c === cid), { what: 'the chunk stored again' })
    expect((await readFile((await chunkFiles(b.dataDir)).find(([c]) => c === cid)![1])).equals(sealed)).toBe(false)
  })
})
