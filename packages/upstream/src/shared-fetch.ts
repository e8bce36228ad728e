import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { ChunkUnavailableError } from '@peerglance/interface'
import type { AbortOptions, ChunkStore, Logger, Manifest } from '@peerglance/interface'
import type { GlanceClient } from './glance-client.ts'
import { pieceSizeFor } from './piece-board.ts'
import type { BoardAnswer, BoardRequest, PieceBoard } from './piece-board.ts'
import { rank } from './rendezvous.ts'

/** Which piece of which image, in pieces of which size: what an agent asks a holder for. */
export interface PieceRequest { image: string, piece: number, pieceSize: number }

/** The mesh as a first fetch of an upstream image sees it. */
export interface PiecePeers {
  readonly self: string
  known: () => Promise<string[]>
  /** Asks `peer`'s piece board (it keeps the board of the image when it ranks first). */
  ask: (peer: string, request: BoardRequest, opts: AbortOptions) => Promise<BoardAnswer>
  /** Streams a piece from `peer`, which fetched it from the upstream. */
  piece: (peer: string, request: PieceRequest, opts: AbortOptions) => AsyncIterable<Uint8Array>
}

export interface SharedFetchContext {
  client: GlanceClient
  chunks: Pick<ChunkStore, 'chunkSize' | 'ingest' | 'read'>
  peers: PiecePeers
  /** This agent's own board, answered directly when it keeps the image's. */
  board: PieceBoard
  /** Peers found to have sent other bytes than the upstream's: never read from again. */
  distrusted: Set<string>
  logger: Logger
  /** Image bytes received from the upstream. */
  received: (bytes: number) => void
  /** Image bytes received from peers, as pieces. */
  fromPeers: (bytes: number) => void
  /** A peer sent a piece that was not the upstream's bytes. */
  lied: (peer: string) => void
  signal: AbortSignal
  /** How long a piece someone else is fetching is waited for at most, beyond its lease (WAIT_MS). */
  waitMs?: number
}

/** What the upstream itself says the whole hashes to (md5 always; sha512 when that is its algorithm). */
export interface Truth { md5: string, sha512?: string }

const UPSTREAM = 'upstream'
/** Pieces leased and fetched from the upstream at once by one agent. */
const LEASERS = 2
/** Pieces gathered ahead of the one being verified. */
const LOOKAHEAD = 3
/** Boards asked in turn, by rank, before fetching alone. */
const BOARDS = 2
const ASK_TIMEOUT_MS = 5000
/** A peer sends a piece at least this fast (bytes per second), or it is read from the upstream. */
const PEER_MIN_RATE = 1_000_000
const PEER_TIMEOUT_MIN_MS = 15_000
/** How long a piece someone else is fetching is waited for at most, beyond its lease. */
const WAIT_MS = 45_000

interface Piece {
  start: number
  end: number
  /** Set once the piece is being had here: fetched, from the upstream or a peer, or failed. */
  ready?: Promise<void>
  /** Its chunks' CIDs: what blame compares (each is the sha256 of a chunk, computed as it is stored). */
  cids: string[]
  /** `upstream`, or the peer it was read from. */
  from?: string
  /** Bumped when the piece's bytes are replaced (a peer lied). */
  version: number
}

/**
 * The first fetch of one upstream image on one agent, shared with every other agent reading it at
 * the same time: the image is cut into chunk-aligned pieces; the board hands each piece to one of
 * them to fetch from the upstream with HTTP Range, and the others read it from that agent. The
 * whole is checked against the upstream's own sha512 (md5 when it has none) before its manifest is recorded.
 *
 * A peer's piece can only be checked with the whole. When the whole does not match, every piece
 * read from a peer is fetched again from the upstream; a peer whose piece's chunk CIDs differ from
 * those of the upstream's is blamed (logged, counted, never read from again by this agent) and its bytes are
 * dropped; the whole is checked once more. Readers that had already been sent a replaced piece
 * are cut before their last bytes.
 */
export class SharedFetch {
  readonly image: string
  readonly size: number
  readonly pieceSize: number
  readonly pieces: Piece[]
  /** The verified manifest, recorded by the caller; rejects when the image could not be had whole. */
  readonly verified: Promise<Manifest>
  readonly #c: SharedFetchContext
  readonly #truth: Truth
  readonly #signal: AbortSignal
  readonly #abort = new AbortController()
  /** Every chunk this fetch stored (pinned until the caller releases them). */
  readonly pinned: string[] = []
  #boards: string[] | undefined

  constructor (context: SharedFetchContext, image: string, size: number, truth: Truth) {
    this.#c = context
    this.image = image
    this.size = size
    this.#truth = truth
    this.#signal = AbortSignal.any([context.signal, this.#abort.signal])
    this.pieceSize = pieceSizeFor(size, context.chunks.chunkSize)
    this.pieces = Array.from({ length: Math.ceil(size / this.pieceSize) }, (_, i) => ({
      start: i * this.pieceSize, end: Math.min(size, (i + 1) * this.pieceSize) - 1, cids: [], version: 0
    }))
    this.verified = this.#run()
    this.verified.catch(() => {})
  }

  /** Resolves once piece `index` is here (starting to gather it if nothing has). */
  async ensure (index: number): Promise<void> {
    const piece = this.pieces[index]
    piece.ready ??= this.#gather(index)
    await piece.ready
  }

  /** The bytes of a piece that is here. */
  readPiece (index: number, opts: AbortOptions = {}): AsyncIterable<Uint8Array> {
    const p = this.pieces[index]
    const manifest: Manifest = { size: p.end - p.start + 1, chunkSize: this.#c.chunks.chunkSize, cids: p.cids, md5: '', sha512: '', staged: false }
    return this.#c.chunks.read(manifest, 0, manifest.size - 1, opts)
  }

  /** A piece this agent fetched from the upstream itself (the only ones it serves to peers). */
  fetchedHere (index: number): boolean {
    return this.pieces[index]?.from === UPSTREAM
  }

  /** Whether any piece read at `versions` has been replaced since. */
  replacedSince (versions: readonly number[]): boolean {
    return versions.some((v, i) => this.pieces[i].version !== v)
  }

  async #run (): Promise<Manifest> {
    for (let i = 0; i < LEASERS; i++) void this.#lease().catch(err => { this.#c.logger.debug({ imageId: this.image, err: { message: (err as Error).message } }, 'leasing pieces stopped') })
    try {
      if (!await this.#verify() && !await this.#repair()) {
        throw new ChunkUnavailableError(`The upstream sent data for image ${this.image} that does not match its own checksum; nothing was kept.`)
      }
      // The md5 is the upstream's own: when its sha512 matched, the bytes are the upstream's.
      return { size: this.size, chunkSize: this.#c.chunks.chunkSize, cids: this.pieces.flatMap(p => p.cids), md5: this.#truth.md5, sha512: this.#sha512, staged: false }
    } finally {
      // Leasers stop; pieces still being read from peers are no longer needed.
      this.#abort.abort(new Error('the image was fetched'))
    }
  }

  #sha512 = ''

  /**
   * Hashes the pieces in order (gathering them a few ahead) and compares with the upstream's:
   * sha512 (the manifest's), and md5 only when the upstream has no sha512 to compare with.
   */
  async #verify (): Promise<boolean> {
    const md5 = this.#truth.sha512 == null ? createHash('md5') : undefined
    const sha512 = createHash('sha512')
    for (let i = 0; i < this.pieces.length; i++) {
      for (let j = i + 1; j < Math.min(this.pieces.length, i + LOOKAHEAD); j++) this.ensure(j).catch(() => {})
      await this.ensure(i)
      for await (const part of this.readPiece(i, { signal: this.#c.signal })) {
        md5?.update(part)
        sha512.update(part)
      }
    }
    this.#sha512 = sha512.digest('hex')
    return md5 == null ? this.#sha512 === this.#truth.sha512 : md5.digest('hex') === this.#truth.md5
  }

  /** Every piece a peer sent, fetched again from the upstream; the liars blamed; the whole checked again. */
  async #repair (): Promise<boolean> {
    const suspects = this.pieces.filter(p => p.from !== UPSTREAM)
    if (suspects.length === 0) return false
    this.#c.logger.error({ imageId: this.image, pieces: suspects.length }, 'an image read from the upstream and peers does not hash to the upstream\'s value; fetching the peers\' pieces from the upstream')
    for (const piece of suspects) {
      const { from, cids } = piece
      await this.#fromUpstream(piece)
      piece.version++
      if (!sameCids(piece.cids, cids) && from != null) {
        this.#c.distrusted.add(from)
        this.#c.lied(from)
        this.#c.logger.error({ imageId: this.image, peer: from, start: piece.start, end: piece.end }, 'a peer sent a piece of an upstream image that is not the upstream\'s bytes; not reading from it again')
      }
    }
    return await this.#verify()
  }

  /** Fetches pieces the board leases to this agent from the upstream, until none is left. */
  async #lease (): Promise<void> {
    for (let rounds = 0; rounds < 2 * this.pieces.length && !this.#signal.aborted; rounds++) {
      const answer = await this.#ask({ op: 'lease', image: this.image, pieceSize: this.pieceSize })
      if (answer == null || !('fetch' in answer)) return
      const piece = this.pieces[answer.fetch]
      if (piece == null) return
      if (piece.ready != null) {
        await piece.ready.catch(() => {})
        continue
      }
      piece.ready = this.#fromUpstream(piece)
      await piece.ready
    }
  }

  /** A piece this agent needs: from the agent that holds it, else from the upstream. */
  async #gather (index: number): Promise<void> {
    const piece = this.pieces[index]
    const deadline = Date.now() + (this.#c.waitMs ?? WAIT_MS) + this.pieceSize / PEER_MIN_RATE * 1000
    while (true) {
      this.#signal.throwIfAborted()
      const asked = Date.now()
      const keeper = this.#boards?.[0]
      const answer = await this.#ask({ op: 'want', image: this.image, piece: index, pieceSize: this.pieceSize })
      if (answer != null && 'wait' in answer) {
        if (Date.now() >= deadline) {
          // A board that kept a piece waiting past any lease is not asked again: one that answers
          // `wait` for ever would hold every piece that long (the next board, or none, is asked).
          if (keeper != null && keeper !== this.#c.peers.self && this.#boards?.[0] === keeper) {
            this.#c.logger.warn({ imageId: this.image, board: keeper, piece: index }, 'a piece board kept a piece waiting past its lease; asking the next')
            this.#boards.shift()
          }
          break
        }
        // A board that answers at once is not let to make this a busy loop.
        if (Date.now() - asked < 200) await sleep(200, undefined, { signal: this.#signal })
        continue
      }
      if (answer != null && 'holder' in answer && answer.holder !== this.#c.peers.self && !this.#c.distrusted.has(answer.holder)) {
        try {
          await this.#fromPeer(piece, index, answer.holder)
          return
        } catch (err) {
          this.#signal.throwIfAborted()
          this.#c.logger.warn({ imageId: this.image, peer: answer.holder, piece: index, err: { message: (err as Error).message } }, 'a peer did not send a piece of an upstream image; fetching it from the upstream')
        }
      }
      break
    }
    await this.#fromUpstream(piece)
  }

  async #fromUpstream (piece: Piece): Promise<void> {
    const length = piece.end - piece.start + 1
    const body = await this.#c.client.download(this.image, piece.start, piece.end, this.#c.signal)
    const self = this
    const counted = (async function * () {
      for await (const part of body as unknown as AsyncIterable<Uint8Array>) {
        self.#c.received(part.byteLength)
        yield part
      }
    })()
    const got = await this.#c.chunks.ingest(counted, { maxBytes: length, expectedSize: length, hashWhole: false, signal: this.#c.signal })
    this.#have(piece, got.cids, UPSTREAM)
    void this.#tell(this.pieces.indexOf(piece))
  }

  async #fromPeer (piece: Piece, index: number, peer: string): Promise<void> {
    const length = piece.end - piece.start + 1
    const signal = AbortSignal.any([this.#signal, AbortSignal.timeout(Math.max(PEER_TIMEOUT_MIN_MS, length / PEER_MIN_RATE * 1000))])
    const self = this
    const counted = (async function * () {
      for await (const part of self.#c.peers.piece(peer, { image: self.image, piece: index, pieceSize: self.pieceSize }, { signal })) {
        self.#c.fromPeers(part.byteLength)
        yield part
      }
    })()
    const got = await this.#c.chunks.ingest(counted, { maxBytes: length, expectedSize: length, hashWhole: false, signal })
    this.#have(piece, got.cids, peer)
  }

  #have (piece: Piece, cids: string[], from: string): void {
    this.pinned.push(...cids)
    piece.cids = cids
    piece.from = from
  }

  /** Tells the board this agent has a piece from the upstream (it took note only if it leased it here). */
  async #tell (index: number): Promise<void> {
    const keeper = this.#boards?.[0]
    const request: BoardRequest = { op: 'done', image: this.image, piece: index, pieceSize: this.pieceSize }
    if (keeper === this.#c.peers.self) await this.#c.board.ask(keeper, request)
    else if (keeper != null) await this.#c.peers.ask(keeper, request, { signal: AbortSignal.timeout(ASK_TIMEOUT_MS) }).catch(() => {})
  }

  /**
   * The image's board (the first of the first BOARDS agents by rank that answers; this agent's own
   * when it ranks first); undefined when none answers, and the piece is then fetched alone.
   */
  async #ask (request: BoardRequest): Promise<BoardAnswer | undefined> {
    const { peers, board } = this.#c
    this.#boards ??= rank(this.image, [peers.self, ...await peers.known()]).slice(0, BOARDS)
    while (this.#boards.length > 0) {
      const keeper = this.#boards[0]
      try {
        const answer = keeper === peers.self
          ? await board.ask(peers.self, request)
          : await peers.ask(keeper, request, { signal: AbortSignal.any([this.#signal, AbortSignal.timeout(ASK_TIMEOUT_MS + 2000)]) })
        if (!('refused' in answer)) return answer
        this.#c.logger.warn({ imageId: this.image, board: keeper, reason: answer.refused }, 'a piece board refused; asking the next')
      } catch (err) {
        if (this.#signal.aborted) return undefined
        this.#c.logger.warn({ imageId: this.image, board: keeper, err: { message: (err as Error).message } }, 'a piece board did not answer; asking the next')
      }
      this.#boards.shift()
    }
    return undefined
  }
}

function sameCids (a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((cid, i) => cid === b[i])
}
