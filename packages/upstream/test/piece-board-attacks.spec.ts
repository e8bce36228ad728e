/**
 * A compromised member against an image's piece board (piece-board.ts): taking every lease and
 * fetching nothing, and piling up waiters.
 */
import { describe, expect, it } from 'vitest'
import { PieceBoard, pieceSizeFor } from '../src/index.ts'

const CHUNK = 1024 * 1024
const SIZE = 64 * 4 * CHUNK
const PIECE = pieceSizeFor(SIZE, CHUNK)

describe('attacks on the piece board', () => {
  it('a peer that leases pieces and never fetches them holds a few, for one lease, and the readers get the rest', async () => {
    let now = 0
    const board = new PieceBoard(id => id === 'img' ? SIZE : undefined, CHUNK, { now: () => now })
    const pieces = SIZE / PIECE
    const taken: number[] = []
    for (let i = 0; i < pieces; i++) {
      const answer = await board.ask('greedy', { op: 'lease', image: 'img', pieceSize: PIECE })
      if ('fetch' in answer) taken.push(answer.fetch)
    }
    // It also tries each piece by `want`, which grants a free piece to who asks.
    for (let i = 0; i < pieces; i++) {
      const answer = await board.ask('greedy', { op: 'want', image: 'img', piece: i, pieceSize: PIECE })
      if ('fetch' in answer && !taken.includes(answer.fetch)) taken.push(answer.fetch)
    }
    expect(taken.length).toBeLessThanOrEqual(8)
    // An honest reader is leased a piece at once.
    expect(await board.ask('honest', { op: 'lease', image: 'img', pieceSize: PIECE })).toEqual({ fetch: taken.length })
    expect(await board.ask('honest', { op: 'done', image: 'img', piece: taken.length, pieceSize: PIECE })).toEqual({ holder: 'honest' })
    // Its leases ran out without a done: the pieces go to the readers, and it gets no more.
    now += 60_000
    for (const piece of taken) expect(await board.ask('honest', { op: 'want', image: 'img', piece, pieceSize: PIECE })).toEqual({ fetch: piece })
    expect(await board.ask('greedy', { op: 'lease', image: 'img', pieceSize: PIECE })).toEqual({ none: true })
    expect(await board.ask('greedy', { op: 'want', image: 'img', piece: pieces - 1, pieceSize: PIECE })).toEqual({ wait: true })
  })
})
