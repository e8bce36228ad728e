import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { collector, PeerLink } from '../src/exchange-client.ts'
import type { Dial, ResultSink } from '../src/exchange-client.ts'
import type { FrameStream, FrameStreamHandlers } from '../src/frame-stream.ts'
import { CODE_OK, FRAME_ANNOUNCE, FRAME_GET, frame } from '../src/framing.ts'

/** A stream that takes every frame sent and never answers. */
function sink (sent: number[]): FrameStream {
  return {
    send: data => { sent.push(data.byteLength); return true },
    onDrain: async () => {},
    writable: true,
    close: async () => {},
    abort: () => {},
    listen: () => {},
    debugState: () => ({})
  }
}

describe('PeerLink', () => {
  it('dials a peer that went away once for all the requests waiting, which fail with that dial\'s error', async () => {
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    let dials = 0
    const dial: Dial = async () => {
      dials++
      await new Promise(resolve => setTimeout(resolve, 50))
      throw Object.assign(new Error('connection refused'), { name: 'DialError' })
    }
    const link = new PeerLink(peer, {}, defaultLogger().forComponent('test'), dial, 4, 2)
    const outcomes = await Promise.all(Array.from({ length: 8 }, async (_, id) =>
      await link.request(id, FRAME_GET, new Uint8Array(36), 5_000, undefined, collector).then(() => 'answered', (err: Error) => err.name)))
    expect(outcomes).toEqual(Array(8).fill('DialError'))
    expect(dials).toBe(1)
    // A later request tries again: the peer may be back.
    await expect(link.request(9, FRAME_GET, new Uint8Array(36), 5_000, undefined, collector)).rejects.toThrow('connection refused')
    expect(dials).toBe(2)
  })

  it('lets the others dial when the first open was given up by its own caller', async () => {
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    let dials = 0
    const dial: Dial = async signal => {
      dials++
      await new Promise(resolve => setTimeout(resolve, 30))
      if (signal?.aborted === true) throw Object.assign(new Error('aborted'), { name: 'AbortError' })
      throw Object.assign(new Error('connection refused'), { name: 'DialError' })
    }
    const link = new PeerLink(peer, {}, defaultLogger().forComponent('test'), dial, 4, 2)
    const first = link.request(0, FRAME_GET, new Uint8Array(36), 5_000, AbortSignal.timeout(5), collector).then(() => 'answered', (err: Error) => err.name)
    const second = link.request(1, FRAME_GET, new Uint8Array(36), 5_000, undefined, collector).then(() => 'answered', (err: Error) => err.name)
    expect(await second).toBe('DialError')
    expect(await first).toBe('AbortError')
    expect(dials).toBe(2)
  })

  it('sends one-way frames that come while the first stream opens on that stream: one dial, not one each', async () => {
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    let dials = 0
    const sent: number[] = []
    const dial: Dial = async () => {
      dials++
      await new Promise(resolve => setTimeout(resolve, 30))
      return sink(sent)
    }
    const link = new PeerLink(peer, {}, defaultLogger().forComponent('test'), dial, 4, 2)
    await Promise.all(Array.from({ length: 6 }, async () => { await link.notify(FRAME_ANNOUNCE, new Uint8Array(20), undefined) }))
    expect(sent).toEqual(Array(6).fill(30))
    expect(dials).toBe(1)
  })

  it('a body verified after it arrived (hashed on a worker) is handed to its caller, or back to its lender when the caller gave up meanwhile', async () => {
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    let deliver: FrameStreamHandlers['data'] = () => {}
    const sent: number[] = []
    const stream: FrameStream = { ...sink(sent), listen: handlers => { deliver = handlers.data } }
    const link = new PeerLink(peer, {}, defaultLogger().forComponent('test'), async () => stream, 1, 2)
    const verdicts: Array<PromiseWithResolvers<string>> = []
    const dropped: number[] = []
    const okSink = (id: number) => (): ResultSink<string> => {
      const verdict = Promise.withResolvers<string>()
      verdicts.push(verdict)
      return { write: () => {}, finish: async () => await verdict.promise, drop: () => { dropped.push(id) } }
    }
    const answer = (id: number): void => { deliver(frame(FRAME_GET, CODE_OK, id, new Uint8Array(10)).subarray()) }

    const waited = link.request(1, FRAME_GET, new Uint8Array(36), 5_000, undefined, okSink(1))
    await expect.poll(() => sent.length).toBe(1)
    const aborting = new AbortController()
    const abandoned = link.request(2, FRAME_GET, new Uint8Array(36), 5_000, aborting.signal, okSink(2))
    await expect.poll(() => sent.length).toBe(2)
    answer(1)
    answer(2)
    expect(verdicts.length).toBe(2)
    // The second caller gives up while its body is being hashed: nobody will take the body.
    aborting.abort(new Error('reader went away'))
    await expect(abandoned).rejects.toMatchObject({ name: 'AbortedError' })
    verdicts[1].resolve('second')
    verdicts[0].resolve('first')
    expect(await waited).toBe('first')
    await new Promise(resolve => setImmediate(resolve))
    expect(dropped).toEqual([2])
  })
})
