import { peerIdFromString } from '@libp2p/peer-id'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it } from 'vitest'
import { HAVE_DOWNLOADING } from '../src/framing.ts'
import { noiseLength } from '../src/noise-lengths.ts'
import { cleanup, fullyConnected, startAgent } from './fixtures.ts'

describe('Noise length prefixes', () => {
  afterEach(cleanup)

  it('read as big-endian u16, and as 0 (wait for more) while fewer than two bytes are there', () => {
    expect(noiseLength(new Uint8Array([0x12, 0x34, 9]))).toBe(0x1234)
    expect(noiseLength(new Uint8ArrayList(new Uint8Array([0xff]), new Uint8Array([0xf0, 1])))).toBe(0xfff0)
    expect(noiseLength(new Uint8Array([0x12]))).toBe(0)
    expect(noiseLength(new Uint8ArrayList())).toBe(0)
  })

  it('cost no RangeError per message read on a mesh connection (V8 captured a stack trace for each)', { timeout: 60_000 }, async () => {
    const a = await startAgent()
    const b = await startAgent({ bootstrap: a.mesh.multiaddrs })
    await fullyConnected([a, b])
    const peer = peerIdFromString(b.mesh.peerId)
    const ask = async (): Promise<void> => { await a.mesh.exchange.have(peer, 'k1', [], { state: HAVE_DOWNLOADING, bits: new Uint8Array(0) }) }
    // The chunk stream opened; identify's varint reads (once per connection) done.
    await ask()
    await new Promise(resolve => setTimeout(resolve, 500))
    const real = globalThis.RangeError
    let built = 0
    globalThis.RangeError = new Proxy(real, {
      apply (target, self, args: [string?]) { built++; return Reflect.apply(target, self, args) },
      construct (target, args: [string?], newTarget) { built++; return Reflect.construct(target, args, newTarget) }
    })
    try {
      // HAVE requests and their answers travel on libp2p (Noise + yamux) both ways.
      for (let i = 0; i < 50; i++) await ask()
    } finally {
      globalThis.RangeError = real
    }
    // One per read before (at least one per message each way); a stray one elsewhere in libp2p is not what this is about.
    expect(built).toBeLessThan(5)
  })
})
