import type { ServerResponse } from 'node:http'
import { PassThrough, Readable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import type { AgentConfig } from '@peerglance/config'
import { KeystoneSession } from '@peerglance/auth-keystone'
import { AuthUnavailableError, ChunkUnavailableError } from '@peerglance/interface'
import type { AbortOptions, ChunkStore, ImageReader, ImageRecord, Logger, Manifest } from '@peerglance/interface'
import type { LevelMetadataStore } from '@peerglance/metadata-store'
import type { MeshLibp2p } from '@peerglance/mesh'
import { GlanceClient, OriginFetch, ReadThrough, UPSTREAM_PROPERTY, UpstreamMirror, isMirrored, parseBoardRequest } from '@peerglance/upstream'
import type { BoardAnswer, MirrorPeers, PiecePeers, PieceRequest } from '@peerglance/upstream'
import { GLANCE_RULES } from '@peerglance/glance-domain'
import type { PolicyInit, RuleDefault } from '@peerglance/glance-domain'
import { lpStream } from '@libp2p/utils'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { Counter, Gauge } from 'prom-client'
import type { Registry } from 'prom-client'
import type { UpstreamView } from './ops-routes.ts'

/** Gossip topic of the pollers' heartbeats (when each last read the upstream's list whole). */
export const UPSTREAM_TOPIC = 'peerglance/upstream/1'
/**
 * `/peerglance/origin-fetch/2.0.0`, the first fetch of an upstream image shared among the agents
 * reading it: one length-prefixed JSON request. A board request (`lease`, `want`, `done`) is
 * answered with one length-prefixed JSON answer; `piece` with a JSON header (`{ size }` or
 * `{ refused }`) and then the piece's bytes in length-prefixed frames.
 */
export const ORIGIN_FETCH_PROTOCOL = '/peerglance/origin-fetch/2.0.0'
/** A board request, waiting up to 2 s for a piece someone is fetching, is answered within this. */
const ASK_TIMEOUT_MS = 10_000
/** A piece is sent within this, or the stream is reset (the reader then fetches it from the upstream). */
const PIECE_TIMEOUT_MS = 120_000
const FRAME = 256 * 1024
const DIAL_TIMEOUT_MS = 3000

/** Whether the agent has an upstream: a URL or a region, and a Keystone to log in at. */
export function upstreamConfigured (config: AgentConfig): boolean {
  const u = config.upstream
  return (u.url != null || u.region != null) && (u.keystone.url ?? config.auth.keystone.url) != null
}

/** Where a download finds an image's manifest (glance-domain's ManifestSource). */
interface ManifestSource { fetch: (imageId: string, opts?: AbortOptions) => Promise<Manifest | undefined> }

export interface UpstreamParts {
  client: GlanceClient
  mirror: UpstreamMirror
  /** Whether the image is mirrored from the upstream. */
  isUpstream: (imageId: string) => boolean
  /** Downloads: upstream images with no data in the mesh are read through (`manifests`, `reader`). */
  manifests: (inner: ManifestSource) => ManifestSource
  reader: (inner: ImageReader) => ImageReader
  /** For the status document. */
  status: () => UpstreamView
  /**
   * 1 when the upstream holds the image with the bytes `manifest` describes (it is asked): a copy
   * the cache may count, so the last agents may evict an upstream image; 0 otherwise.
   */
  copies: (imageId: string, manifest: Manifest) => Promise<number>
  /**
   * Stores the bytes of an upload to an upstream image as they pass through to the upstream;
   * `settle` records them as the image's data once the upstream accepted the upload and its
   * checksum and os_hash_value match them (else drops them). `drop` stops feeding the store.
   */
  keepUpload: (imageId: string, bytes: AsyncIterable<Uint8Array>, drop: () => void) => { settle: (accepted: boolean) => Promise<void> }
  start: () => Promise<void>
  stop: () => Promise<void>
}

/**
 * The cloud's existing Glance as the mesh's origin (config `upstream`), wired to this agent's
 * metadata store, mesh and metrics; undefined when no upstream is configured.
 */
export function upstreamOrigin (config: AgentConfig, components: {
  metadata: LevelMetadataStore
  chunks: ChunkStore
  libp2p: MeshLibp2p
  deleteImage: (image: ImageRecord) => Promise<void>
  logger: Logger
  registry: Registry
}): UpstreamParts | undefined {
  if (!upstreamConfigured(config)) return undefined
  const u = config.upstream
  const keystoneUrl = (u.keystone.url ?? config.auth.keystone.url) as string
  const session = new KeystoneSession({ ...u.keystone, url: keystoneUrl }, { timeoutMs: u.timeoutMs, label: 'the upstream\'s Keystone', logger: components.logger })
  const fixed = u.url?.replace(/\/+$/, '')
  const client = new GlanceClient(session, {
    endpoint: async () => fixed ?? await imageEndpoint(session, u.region as string),
    timeoutMs: u.timeoutMs
  })
  const libp2p = components.libp2p
  const peerIds = new Map<string, PeerId>()
  const known = async (): Promise<string[]> => {
    for (const peer of await libp2p.peerStore.all()) peerIds.set(peer.id.toString(), peer.id)
    return [...peerIds.keys()]
  }
  const peers: MirrorPeers = {
    self: libp2p.peerId.toString(),
    known,
    publish: async message => { await libp2p.services.pubsub.publish(UPSTREAM_TOPIC, message) },
    onMessage: handler => {
      const pubsub = libp2p.services.pubsub
      const listener = (evt: CustomEvent<{ topic: string, data: Uint8Array }>): void => { if (evt.detail.topic === UPSTREAM_TOPIC) handler(evt.detail.data) }
      pubsub.subscribe(UPSTREAM_TOPIC)
      pubsub.addEventListener('message', listener as never)
      return () => { pubsub.removeEventListener('message', listener as never); pubsub.unsubscribe(UPSTREAM_TOPIC) }
    }
  }
  const m = components.metadata
  const mirror = new UpstreamMirror({
    client,
    peers,
    logger: components.logger,
    store: {
      images: () => m.images(),
      getImage: id => m.getImage(id),
      putImage: async image => { await m.putImage(image) },
      members: id => m.members(id),
      putMember: async member => { await m.putMember(member) },
      deleteMember: async (imageId, memberId) => { await m.deleteMember(imageId, memberId) },
      deleteImage: components.deleteImage
    }
  }, { upstream: fixed ?? `region:${u.region as string}`, intervalMs: u.pollIntervalMs, pollers: u.pollers })
  const refreshed = new Gauge({
    name: 'peerglance_upstream_last_refresh_seconds',
    help: 'When the upstream Glance\'s image list was last read whole (here or by a poller), Unix time; 0 before the first',
    registers: [components.registry],
    collect () { this.set((mirror.lastRefresh ?? 0) / 1000) }
  })
  void refreshed
  void new Gauge({
    name: 'peerglance_upstream_refreshes',
    help: 'Times this agent read the upstream Glance\'s image list whole itself (only pollers do)',
    registers: [components.registry],
    collect () { this.set(mirror.refreshes) }
  })
  const received = new Counter({ name: 'peerglance_upstream_bytes_received_total', help: 'Image bytes read from the upstream Glance', registers: [components.registry] })
  const fromPeers = new Counter({ name: 'peerglance_upstream_piece_bytes_from_peers_total', help: 'Bytes of upstream images\' first fetches read from the agents that fetched them from the upstream', registers: [components.registry] })
  const lied = new Counter({ name: 'peerglance_upstream_pieces_refused_total', help: 'Pieces of upstream images a peer sent that were not the upstream\'s bytes (found by the whole image\'s hash; fetched again from the upstream)', registers: [components.registry] })
  const encoder = new TextEncoder()
  const decoder = new TextDecoder()
  const open = async (peer: string, request: object, signal: AbortSignal): Promise<{ stream: Stream, lp: ReturnType<typeof lpStream> }> => {
    const id = peerIds.get(peer)
    if (id == null) throw new Error(`peer ${peer} is not known`)
    // A board or holder that has gone (the peer store remembers it) is given up on quickly.
    const stream = await libp2p.dialProtocol(id, ORIGIN_FETCH_PROTOCOL, { signal: AbortSignal.any([signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]) })
    const lp = lpStream(stream, { maxDataLength: FRAME })
    await lp.write(encoder.encode(JSON.stringify(request)), { signal })
    return { stream, lp }
  }
  const originPeers: PiecePeers = {
    self: libp2p.peerId.toString(),
    known,
    ask: async (peer, request, opts) => {
      const signal = AbortSignal.any([AbortSignal.timeout(ASK_TIMEOUT_MS), ...opts.signal == null ? [] : [opts.signal]])
      const { stream, lp } = await open(peer, request, signal)
      try {
        return JSON.parse(decoder.decode((await lp.read({ signal })).subarray())) as BoardAnswer
      } finally {
        await stream.close({ signal }).catch(() => { stream.abort(new Error('closing failed')) })
      }
    },
    piece: async function * (peer, request, opts) {
      const signal = opts.signal ?? AbortSignal.timeout(PIECE_TIMEOUT_MS)
      const { stream, lp } = await open(peer, { op: 'piece', ...request }, signal)
      try {
        const header = JSON.parse(decoder.decode((await lp.read({ signal })).subarray())) as { size?: unknown, refused?: unknown }
        if (typeof header.size !== 'number') throw new Error(`the peer refused: ${String(header.refused)}`)
        for (let got = 0; got < header.size;) {
          const frame = (await lp.read({ signal })).subarray()
          got += frame.byteLength
          yield frame
        }
      } finally {
        stream.abort(new Error('piece read'))
      }
    }
  }
  const origin = new OriginFetch({
    client,
    chunks: components.chunks,
    metadata: m,
    peers: originPeers,
    logger: components.logger,
    received: n => { received.inc(n) },
    fromPeers: n => { fromPeers.inc(n) },
    lied: () => { lied.inc() }
  })
  const readThrough = new ReadThrough({ origin, metadata: m, logger: components.logger })
  const serve = async (stream: Stream, connection: Connection): Promise<void> => {
    const from = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(PIECE_TIMEOUT_MS)
    try {
      const lp = lpStream(stream, { maxDataLength: 1024 })
      const raw = JSON.parse(decoder.decode((await lp.read({ signal })).subarray())) as { op?: unknown }
      if (raw.op === 'piece') {
        const request = pieceRequest(raw)
        const bytes = request == null ? undefined : await origin.piece(request, { signal })
        const size = request == null || bytes == null ? undefined : pieceLength(request, m.getImage(request.image)?.size)
        if (bytes == null || size == null) {
          await lp.write(encoder.encode(JSON.stringify({ refused: 'this agent does not hold that piece' })), { signal })
        } else {
          await lp.write(encoder.encode(JSON.stringify({ size })), { signal })
          for await (const part of bytes) {
            for (let at = 0; at < part.byteLength; at += FRAME) await lp.write(part.subarray(at, at + FRAME), { signal })
          }
        }
      } else {
        const request = parseBoardRequest(raw)
        const answer: BoardAnswer = request == null ? { refused: 'not a board request' } : await origin.board(from, request)
        await lp.write(encoder.encode(JSON.stringify(answer)), { signal })
      }
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
    }
  }
  return {
    client,
    mirror,
    isUpstream: id => { const image = m.getImage(id); return image != null && isMirrored(image) },
    manifests: inner => ({
      fetch: async (imageId, opts) => {
        try {
          return await inner.fetch(imageId, opts) ?? readThrough.manifest(imageId)
        } catch (err) {
          // Named, but no agent could send it: every agent evicted the image; read it through again.
          if (!(err instanceof ChunkUnavailableError)) throw err
          const again = readThrough.manifest(imageId, true)
          if (again == null) throw err
          return again
        }
      }
    }),
    reader: inner => readThrough.reader(inner),
    keepUpload: (imageId, bytes, drop) => {
      const stop = new AbortController()
      const ingest = components.chunks.ingest(bytes, { maxBytes: config.glance.imageSizeCap, signal: stop.signal })
      ingest.catch(err => {
        drop()
        if (!stop.signal.aborted) components.logger.warn({ imageId, err: { message: (err as Error).message } }, 'keeping the bytes of an upload to the upstream failed; they will be read through')
      })
      return {
        settle: async accepted => {
          // Refused or failed: the upstream may not have read the whole body, so the store stops too.
          if (!accepted) stop.abort(new Error('the upstream did not take the upload'))
          const got = await ingest.catch(() => undefined)
          if (got == null) return
          let kept = false
          try {
            const image = m.getImage(imageId)
            const matches = image != null && image.status === 'active' && image.size === got.size && image.checksum === got.md5 && (image.os_hash_algo !== 'sha512' || image.os_hash_value === got.sha512)
            if (accepted && matches) {
              await m.dataAdded(image, { size: got.size, chunkSize: got.chunkSize, cids: got.cids, md5: got.md5, sha512: got.sha512, staged: false })
              kept = true
              components.logger.info({ imageId, bytes: got.size }, 'kept the bytes of an upload to the upstream')
            } else if (accepted) {
              components.logger.warn({ imageId }, 'the upstream\'s checksum of an upload does not match the bytes that passed through; they were not kept')
            }
          } finally {
            components.chunks.release(got.cids)
            if (!kept) await components.chunks.collect(new Set(got.cids), async cid => await m.isReferenced(cid))
          }
        }
      }
    },
    copies: async (imageId, manifest) => {
      const image = m.getImage(imageId)
      if (image == null || !isMirrored(image)) return 0
      const hash = await origin.upstreamHash(imageId)
      return hash != null && manifest[hash.algo] === hash.value && manifest.size === image.size ? 1 : 0
    },
    status: () => ({
      upstream: fixed ?? `region:${u.region as string}`,
      writes: u.writes,
      lastRefresh: mirror.lastRefresh == null ? null : new Date(mirror.lastRefresh).toISOString(),
      lastError: mirror.lastError ?? null,
      refreshesHere: mirror.refreshes
    }),
    start: async () => {
      await libp2p.handle(ORIGIN_FETCH_PROTOCOL, serve, { maxInboundStreams: 32 })
      mirror.start()
    },
    stop: async () => {
      await mirror.stop()
      origin.stop()
      await libp2p.unhandle(ORIGIN_FETCH_PROTOCOL)
    }
  }
}

/** A `piece` request as a peer sent it, checked; undefined when it is not one. */
function pieceRequest (raw: Record<string, unknown>): PieceRequest | undefined {
  const { image, piece, pieceSize } = raw
  if (typeof image !== 'string' || !Number.isSafeInteger(piece) || (piece as number) < 0 || !Number.isSafeInteger(pieceSize) || (pieceSize as number) < 4096) return undefined
  return { image, piece: piece as number, pieceSize: pieceSize as number }
}

/** Bytes in piece `piece` of an image of `size` bytes; undefined when there is no such piece. */
function pieceLength (request: PieceRequest, size: number | null | undefined): number | undefined {
  const start = request.piece * request.pieceSize
  return size == null || start >= size ? undefined : Math.min(size, start + request.pieceSize) - start
}

/** The rules that write an image or its members: what `upstream.writes: read-only` refuses on upstream images. */
const WRITE_RULES = [
  'modify_image', 'delete_image', 'upload_image', 'publicize_image', 'communitize_image', 'deactivate', 'reactivate', 'copy_image',
  'add_member', 'delete_member', 'modify_member'
] as const

/**
 * `upstream.writes: read-only` as policy: each write rule (the operator's, else Glance's default)
 * also requires that the image is not mirrored from the upstream. Being a policy refusal, a
 * caller who may see the image gets 403 and one who may not 404, as for any rule.
 */
export function readOnlyUpstream (policy: PolicyInit): PolicyInit {
  const rules: Record<string, string> = { ...policy.rules }
  for (const name of WRITE_RULES) {
    const rule: RuleDefault = GLANCE_RULES[name]
    const text = rules[name] ?? (rule.legacy != null && policy.enforceNewDefaults === false ? `(${rule.check}) or (${rule.legacy})` : rule.check)
    rules[name] = `(${text}) and not 'true':%(${UPSTREAM_PROPERTY})s`
  }
  return { ...policy, rules }
}

/** `/v2/images` and what is under it, with the image id when there is one. */
const IMAGE_PATH = /^\/v2\/images(?:\/([^/?]+))?(?:[/?]|$)/
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
/** What is passed on to the upstream of a caller's request, and back of its answer. */
const FORWARDED_HEADERS = ['content-type', 'content-length', 'x-auth-token', 'x-openstack-request-id', 'x-image-meta-store', 'x-openstack-image-size']

/**
 * `upstream.writes: write-through`: a write to an upstream image, and every image create, is sent
 * to the upstream as the caller made it (with the caller's own X-Auth-Token: the upstream's policy
 * decides; in noauth mode, with none to pass on, the agent's service token), and the upstream's
 * answer is the caller's. Once the upstream accepted it, the image is mirrored at once, before the
 * answer, so the caller reads its change back from the agent. Nothing is written in the mesh
 * that the upstream did not accept. Uploaded bytes pass through to the upstream and are kept
 * here on the way, recorded once the upstream accepted them with the checksums they have.
 */
export function writeThrough (api: FastifyInstance, parts: Pick<UpstreamParts, 'client' | 'mirror' | 'isUpstream' | 'keepUpload'>, log: Logger): void {
  api.addHook('onRequest', async (request, reply) => {
    if (!WRITES.has(request.method)) return
    const match = IMAGE_PATH.exec(request.url)
    if (match == null) return
    const imageId = match[1] == null ? undefined : decodeURIComponent(match[1])
    const isCreate = imageId == null && request.method === 'POST'
    if (!isCreate && (imageId == null || !parts.isUpstream(imageId))) return
    const headers: Record<string, string> = {}
    for (const name of FORWARDED_HEADERS) {
      const value = request.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    const hasBody = request.headers['content-length'] != null || request.headers['transfer-encoding'] != null
    // An upload's bytes also go into this agent's store on the way (both branches at the pace of
    // the slower), so the image need not be read back from the upstream.
    const kept = hasBody && imageId != null && request.method === 'PUT' && UPLOAD_PATH.test(request.url) ? tee(request.raw, (bytes, drop) => parts.keepUpload(imageId, bytes, drop)) : undefined
    let res: Response
    try {
      res = await parts.client.request(request.url, {
        method: request.method,
        headers,
        token: headers['x-auth-token'],
        body: hasBody ? Readable.toWeb(kept?.upstream ?? request.raw) as ReadableStream<Uint8Array> : undefined,
        stream: true,
        untimed: hasBody,
        signal: hangUp(reply.raw)
      })
    } catch (err) {
      await kept?.keeper.settle(false)
      throw err
    }
    const body = Buffer.from(await res.arrayBuffer())
    if (res.ok) {
      const id = imageId ?? (JSON.parse(body.toString()) as { id?: string }).id
      if (id != null) await parts.mirror.refreshImage(id)
      log.info({ imageId: id, method: request.method, status: res.status }, 'wrote through to the upstream')
    }
    await kept?.keeper.settle(res.ok)
    const type = res.headers.get('content-type')
    if (type != null) reply.type(type)
    await reply.code(res.status).send(body)
  })
}

const UPLOAD_PATH = /^\/v2\/images\/[^/?]+\/file(?:\?|$)/

/**
 * The request body piped to two streams, the upstream's and the store's: the body pauses while
 * either is full, so memory stays bounded; the store's branch can be dropped (it failed) and the
 * upload to the upstream goes on.
 */
function tee<T> (body: Readable, keep: (bytes: AsyncIterable<Uint8Array>, drop: () => void) => T): { upstream: PassThrough, keeper: T } {
  const upstream = new PassThrough()
  const store = new PassThrough()
  body.pipe(upstream)
  body.pipe(store)
  // A body cut short never ends its branches: they fail instead.
  body.once('close', () => {
    if (body.readableEnded) return
    for (const branch of [upstream, store]) branch.destroy(new Error('the upload was cut short'))
  })
  const keeper = keep(store, () => {
    body.unpipe(store)
    store.resume()
  })
  return { upstream, keeper }
}

/** Aborted when the caller goes away before it was answered. */
function hangUp (res: ServerResponse): AbortSignal {
  const controller = new AbortController()
  res.once('close', () => { if (!res.writableFinished) controller.abort(new Error('the client closed the connection')) })
  return controller.signal
}

/** The upstream Glance of `region` in the agent's catalog at the upstream's Keystone. */
async function imageEndpoint (session: KeystoneSession, region: string): Promise<string> {
  const url = await session.endpoint('image', region)
  if (url == null) throw new AuthUnavailableError(`no image endpoint in region ${region} of the upstream's catalog`)
  return url
}
