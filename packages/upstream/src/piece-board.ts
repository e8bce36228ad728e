/**
 * Who fetches which piece of an upstream image from the upstream, while several agents read it
 * for the first time. One agent per image keeps the board (the first by rendezvous hashing of the
 * image id); every agent reading the image asks it for pieces to fetch (`lease`), for who has a
 * piece it needs (`want`), and says when it has fetched one (`done`). The board only ever names
 * the agent that leased a piece as its holder, and only that agent can say it is done, so a peer
 * cannot make others read a piece from a third agent. Nothing here is trusted for the bytes: they
 * are checked against the upstream's own hash of the whole (OriginFetch).
 */

/** A request to the board, as agents send it (`image`, `piece`, `pieceSize` checked on arrival). */
export type BoardRequest =
  | { op: 'lease', image: string, pieceSize: number }
  | { op: 'want', image: string, piece: number, pieceSize: number }
  | { op: 'done', image: string, piece: number, pieceSize: number }

/**
 * The board's answer: fetch that piece from the upstream yourself (it is leased to you now), read
 * it from `holder`, `wait` (someone is fetching it), `none` (every piece is leased or held), or
 * `refused` with a reason.
 */
export type BoardAnswer = { fetch: number } | { holder: string } | { wait: true } | { none: true } | { refused: string }

/** Images one board tracks at once (least recently asked about dropped first), and pieces per image. */
const MAX_IMAGES = 256
const MAX_PIECES = 4096
/** The smallest piece: one HTTP Range request to the upstream each. */
const MIN_PIECE = 4 * 1024 * 1024
/** How long a `want` for a piece being fetched waits for it before answering `wait`. */
const WANT_WAIT_MS = 2000
/** A board untouched this long is forgotten (its image was read, or its readers went away). */
const IDLE_MS = 10 * 60_000
/**
 * Pieces leased to one agent and not done, at most: an honest one fetches 2 (its leasers) and
 * asks for the 3 it reads next. A peer that leased every piece and fetched none made each reader
 * wait out every piece (~50 s each) before fetching it alone.
 */
const MAX_LEASES = 8

/** The piece size every agent uses for an image of `size` bytes: whole chunks, at most MAX_PIECES pieces. */
export function pieceSizeFor (size: number, chunkSize: number): number {
  const chunks = Math.max(Math.ceil(MIN_PIECE / chunkSize), Math.ceil(size / MAX_PIECES / chunkSize))
  return chunks * chunkSize
}

/** Checks what a peer sent is a board request; undefined when it is not. */
export function parseBoardRequest (value: unknown): BoardRequest | undefined {
  if (typeof value !== 'object' || value == null) return undefined
  const r = value as Record<string, unknown>
  if (typeof r.image !== 'string' || r.image.length > 64 || !Number.isSafeInteger(r.pieceSize) || (r.pieceSize as number) <= 0) return undefined
  if (r.op === 'lease') return { op: 'lease', image: r.image, pieceSize: r.pieceSize as number }
  if ((r.op !== 'want' && r.op !== 'done') || !Number.isSafeInteger(r.piece) || (r.piece as number) < 0) return undefined
  return { op: r.op, image: r.image, piece: r.piece as number, pieceSize: r.pieceSize as number }
}

interface Piece {
  holder?: string
  lessee?: string
  leasedUntil: number
  waiters: Array<() => void>
}

interface Board {
  pieceSize: number
  leaseMs: number
  pieces: Piece[]
  touched: number
  /** Agents that let a lease run out without saying done: they get no more leases of this image. */
  lapsed: Set<string>
}

export interface PieceBoardInit {
  /** How long a lease lasts at least; longer for big pieces (default 30 s). */
  leaseMs?: number
  /** The rate a lessee is expected to fetch at, at least, in bytes per second (default 1 MB/s). */
  minRate?: number
  now?: () => number
}

export class PieceBoard {
  readonly #sizeOf: (imageId: string) => number | undefined
  readonly #chunkSize: number
  readonly #boards = new Map<string, Board>()
  readonly #leaseMs: number
  readonly #minRate: number
  readonly #now: () => number

  /**
   * `sizeOf`: the size of an upstream image this agent mirrors, undefined for any other id;
   * `chunkSize`: this agent's, from which it cuts pieces as every agent with the same chunk size
   * does, so that a peer cannot set up an image's board with pieces the others do not use.
   */
  constructor (sizeOf: (imageId: string) => number | undefined, chunkSize: number, init: PieceBoardInit = {}) {
    this.#sizeOf = sizeOf
    this.#chunkSize = chunkSize
    this.#leaseMs = init.leaseMs ?? 30_000
    this.#minRate = init.minRate ?? 1_000_000
    this.#now = init.now ?? Date.now
  }

  /** Answers `from`'s request (`from` as the transport authenticated it, never as the request says). */
  async ask (from: string, request: BoardRequest): Promise<BoardAnswer> {
    const board = this.#board(request.image, request.pieceSize)
    if (typeof board === 'string') return { refused: board }
    if (request.op === 'lease') return this.#lease(board, from)
    const piece = board.pieces[request.piece]
    if (piece == null) return { refused: `image ${request.image} has no piece ${request.piece}` }
    if (request.op === 'done') {
      if (piece.lessee !== from) return { refused: `piece ${request.piece} is not leased to you` }
      piece.holder = from
      for (const wake of piece.waiters.splice(0)) wake()
      return { holder: from }
    }
    if (piece.holder == null && this.#leasedToOther(piece, from)) {
      await new Promise<void>(resolve => {
        const wake = (): void => { clearTimeout(timer); resolve() }
        const timer = setTimeout(() => { piece.waiters.splice(piece.waiters.indexOf(wake), 1); resolve() }, WANT_WAIT_MS)
        piece.waiters.push(wake)
      })
    }
    if (piece.holder != null) return { holder: piece.holder }
    if (this.#leasedToOther(piece, from) || !this.#mayLease(board, from)) return { wait: true }
    this.#grant(board, piece, from)
    return { fetch: request.piece }
  }

  #lease (board: Board, from: string): BoardAnswer {
    const index = board.pieces.findIndex(p => p.holder == null && p.leasedUntil <= this.#now())
    if (index < 0 || !this.#mayLease(board, from)) return { none: true }
    this.#grant(board, board.pieces[index], from)
    return { fetch: index }
  }

  /** Whether `from` may take one more piece: it let none lapse and holds fewer than MAX_LEASES. */
  #mayLease (board: Board, from: string): boolean {
    const now = this.#now()
    let open = 0
    for (const p of board.pieces) {
      if (p.lessee == null || p.holder != null) continue
      if (p.leasedUntil <= now) board.lapsed.add(p.lessee)
      else if (p.lessee === from) open++
    }
    return !board.lapsed.has(from) && open < MAX_LEASES
  }

  #grant (board: Board, piece: Piece, to: string): void {
    piece.lessee = to
    piece.leasedUntil = this.#now() + board.leaseMs
  }

  #leasedToOther (piece: Piece, from: string): boolean {
    return piece.lessee !== from && piece.leasedUntil > this.#now()
  }

  #board (imageId: string, pieceSize: number): Board | string {
    const now = this.#now()
    for (const [id, b] of this.#boards) if (now - b.touched > IDLE_MS) this.#boards.delete(id)
    let board = this.#boards.get(imageId)
    if (board == null) {
      const size = this.#sizeOf(imageId)
      if (size == null) return `image ${imageId} is not an upstream image here`
      if (pieceSize !== pieceSizeFor(size, this.#chunkSize)) return `image ${imageId} is split in pieces of ${pieceSizeFor(size, this.#chunkSize)} bytes here`
      const count = Math.max(1, Math.ceil(size / pieceSize))
      board = { pieceSize, leaseMs: Math.max(this.#leaseMs, (pieceSize / this.#minRate) * 1000), pieces: Array.from({ length: count }, () => ({ leasedUntil: 0, waiters: [] })), touched: now, lapsed: new Set() }
      if (this.#boards.size >= MAX_IMAGES) this.#boards.delete(this.#boards.keys().next().value as string)
    }
    if (board.pieceSize !== pieceSize) return `image ${imageId} is split in pieces of ${board.pieceSize} bytes here`
    // Most recently asked about last, so the first is the one to drop.
    this.#boards.delete(imageId)
    board.touched = now
    this.#boards.set(imageId, board)
    return board
  }
}
