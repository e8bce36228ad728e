import { afterEach, describe, expect, it, vi } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import { cidFromSha256 } from '@peerglance/interface'
import { cleanup, fullyConnected, KiB, seedImage, startAgent } from './fixtures.ts'
import { cidsInBinary, getBit, HAVE_DOWNLOADING } from '../src/framing.ts'

// Counts the CID strings parsed into their binary form (what a HAVE request carries).
const parsed = vi.hoisted(() => ({ count: 0 }))
vi.mock('@peerglance/interface', async importOriginal => {
  const actual = await importOriginal<typeof import('@peerglance/interface')>()
  return { ...actual, cidToBytes: (cid: string) => { parsed.count++; return actual.cidToBytes(cid) } }
})

describe('HAVE requests', () => {
  afterEach(cleanup)

  it('carry an image\'s CIDs parsed once per manifest, not once per request', async () => {
    const seed = await startAgent({ chunkSize: 4 * KiB })
    const image = await seedImage(seed, 3000 * 4 * KiB)
    const asker = await startAgent({ bootstrap: seed.mesh.multiaddrs, chunkSize: 4 * KiB })
    await fullyConnected([seed, asker])
    const { cids } = image.manifest
    const mine = { state: HAVE_DOWNLOADING, bits: new Uint8Array(Math.ceil(cids.length / 8)) } as const
    const before = parsed.count
    for (let i = 0; i < 5; i++) {
      const answer = await asker.mesh.exchange.have(peerIdFromString(seed.mesh.peerId), image.imageId, cids, mine)
      // The seed holds every chunk, and says so for each CID asked.
      expect(cids.every((_, index) => getBit(answer.bits, index))).toBe(true)
    }
    // 3,000 CIDs for the first request, none for the four after it (15,000 before).
    expect(parsed.count - before).toBe(cids.length)
  })

  it('keeps the binary CIDs of the last eight images asked about, not of every image ever asked about', () => {
    const images = Array.from({ length: 9 }, (_, i) => [cidFromSha256(new Uint8Array(32).fill(i))])
    const before = parsed.count
    const first = cidsInBinary(images[0]).slice()
    for (const cids of images.slice(1)) cidsInBinary(cids)
    expect(parsed.count - before).toBe(9)
    // The last eight are kept; the first went out when the ninth came.
    for (const cids of images.slice(1)) cidsInBinary(cids)
    expect(parsed.count - before).toBe(9)
    expect(cidsInBinary(images[0])).toEqual(first)
    expect(parsed.count - before).toBe(10)
  })
})
