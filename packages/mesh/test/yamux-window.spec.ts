import { peerIdFromString } from '@libp2p/peer-id'
import { YamuxStream } from '@libp2p/yamux/stream'
import { afterEach, describe, expect, it } from 'vitest'
import { HAVE_DOWNLOADING } from '../src/framing.ts'
import { cleanup, fullyConnected, MiB, readAll, seedImage, sha512, startAgent } from './fixtures.ts'

type Frame = { header: { flag: number, length: number } }

describe('yamux window updates', () => {
  afterEach(cleanup)

  it('are not sent for every small message, only once half a window is used: libp2p chunks still flow', { timeout: 60_000 }, async () => {
    const seed = await startAgent({ chunkSize: MiB, init: { bulkPort: -1 } })
    const reader = await startAgent({ chunkSize: MiB, bootstrap: seed.mesh.multiaddrs })
    await fullyConnected([seed, reader])
    const peer = peerIdFromString(seed.mesh.peerId)
    const ask = async (): Promise<void> => { await reader.mesh.exchange.have(peer, 'k1', [], { state: HAVE_DOWNLOADING, bits: new Uint8Array(0) }) }
    await ask()
    const proto = YamuxStream.prototype as unknown as { handleWindowUpdate: (this: unknown, frame: Frame) => void }
    const handle = proto.handleWindowUpdate
    let credits = 0
    proto.handleWindowUpdate = function (frame) {
      // A window update with no flags only gives credit (SYN, ACK, FIN and RST ride on them too).
      if (frame.header.flag === 0 && frame.header.length > 0) credits++
      handle.call(this, frame)
    }
    try {
      // 50 HAVE round trips on one libp2p stream: a request and an answer of a few dozen bytes each.
      for (let i = 0; i < 50; i++) await ask()
    } finally {
      proto.handleWindowUpdate = handle
    }
    // One each way per message before (100 or more).
    expect(credits).toBeLessThan(5)
    // 6 MiB of chunks on libp2p (the seed has no bulk channel): past the 256 KiB window many times.
    const image = await seedImage(seed, 6 * MiB)
    const got = await readAll(reader.mesh.reader.read(image.imageId, image.manifest, 0, image.manifest.size - 1))
    expect(sha512(got)).toBe(sha512(image.bytes))
    expect(seed.mesh.exchange.stats.getsServed - seed.mesh.exchange.stats.bulkGetsServed).toBe(6)
  })
})
