import { randomBytes } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { afterEach, describe, expect, it } from 'vitest'
import { cidFromBytes, cidFromSha256, cidToBytes, sha256DigestOf } from '../src/cid.ts'

const parse = CID.parse
const decode = CID.decode
const calls = { parse: 0, decode: 0 }
CID.parse = ((...args: Parameters<typeof parse>) => { calls.parse++; return parse(...args) }) as typeof parse
CID.decode = ((...args: Parameters<typeof decode>) => { calls.decode++; return decode(...args) }) as typeof decode

describe('chunk CIDs', () => {
  afterEach(() => {
    calls.parse = 0
    calls.decode = 0
  })

  it('are parsed once however often their digest or bytes are asked for, with the same answers', () => {
    const digest = randomBytes(32)
    const cid = cidFromSha256(digest)
    const bytes = Uint8Array.from(parse(cid).bytes)
    calls.parse = 0
    for (let i = 0; i < 8; i++) {
      expect(Buffer.from(sha256DigestOf(cid))).toEqual(digest)
      expect(cidToBytes(cid)).toEqual(bytes)
    }
    // 16 parses before, each 7-10 us of multiformats in the interpreter.
    expect(calls.parse).toBe(1)
    // Bytes of a CID parsed lately, and the string of bytes decoded lately, are known.
    calls.decode = 0
    for (let i = 0; i < 8; i++) expect(cidFromBytes(bytes)).toBe(cid)
    expect(calls.decode).toBe(0)
    const other = cidFromSha256(randomBytes(32))
    const otherBytes = Uint8Array.from(parse(other).bytes)
    calls.parse = 0
    calls.decode = 0
    for (let i = 0; i < 8; i++) expect(cidFromBytes(otherBytes)).toBe(other)
    expect(Buffer.from(cidToBytes(other))).toEqual(Buffer.from(otherBytes))
    expect(calls).toEqual({ parse: 0, decode: 1 })
  })

  it('kept are bounded: the oldest of 1,025 is parsed again; bad ones still fail every time', () => {
    const cids = Array.from({ length: 1025 }, () => cidFromSha256(randomBytes(32)))
    for (const cid of cids) sha256DigestOf(cid)
    calls.parse = 0
    sha256DigestOf(cids[1024])
    expect(calls.parse).toBe(0)
    sha256DigestOf(cids[0])
    expect(calls.parse).toBe(1)
    const identity = 'bafkqaaa'
    expect(() => sha256DigestOf(identity)).toThrow(RangeError)
    expect(() => sha256DigestOf(identity)).toThrow(RangeError)
    expect(() => cidToBytes(identity)).toThrow(RangeError)
    expect(() => sha256DigestOf('not a cid')).toThrow()
    expect(() => sha256DigestOf('not a cid')).toThrow()
    const bytes = Uint8Array.from(parse(cids[5]).bytes)
    bytes[0] = 0x07
    expect(() => cidFromBytes(bytes)).toThrow()
    expect(() => cidFromBytes(bytes)).toThrow()
  })

  it('decode bytes to the canonical string even after the CID was parsed in another base', async () => {
    const { base58btc } = await import('multiformats/bases/base58')
    const cid = cidFromSha256(randomBytes(32))
    const other = parse(cid).toString(base58btc)
    expect(other).not.toBe(cid)
    const bytes = Uint8Array.from(cidToBytes(other))
    expect(cidFromBytes(bytes)).toBe(cid)
  })
})
