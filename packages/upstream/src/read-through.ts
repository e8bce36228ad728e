import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { ChunkUnavailableError } from '@peerglance/interface'
import type { AbortOptions, ImageReader, ImageRecord, Logger, Manifest, MetadataStore } from '@peerglance/interface'
import { isMirrored } from './mirror.ts'
import { expectedHash } from './origin-fetch.ts'
import type { OriginFetch } from './origin-fetch.ts'
import { rank } from './rendezvous.ts'

/** The mesh as the read-through sees it: who there is, and asking one agent to fetch an image. */
export interface OriginPeers {
  readonly self: string
  known: () => Promise<string[]>
  /** Asks `peer` to fetch the image from the upstream; true when it agreed (or has it already). */
  ask: (peer: string, imageId: string, opts: AbortOptions) => Promise<boolean>
}

/** The metadata the read-through looks at: the image, and whether its manifest is known yet. */
export type ReadThroughMetadata = Pick<MetadataStore, 'getImage'> & { manifestCidOf: (imageId: string) => string | null }

export interface ReadThroughInit {
  /** Agents asked in turn, by rank, before this one fetches itself (default 3). */
  candidates?: number
  /** How long to wait for another agent's fetch, at least (default 60 s; more for big images). */
  waitMs?: number
  /** Bytes per second a fetch is expected to reach at least, for the wait on big images (default 5 MB/s). */
  minRate?: number
}

/**
 * The first read of an upstream image anywhere in the mesh: one agent fetches it from the
 * upstream (the first by rendezvous hashing of the image id over the agents this one knows, that
 * agrees), the others wait for its manifest to replicate and then read from peers as for any
 * image. Deciding by rank rather than by who asked first means agents that read at once pick the
 * same fetcher without talking to each other, so the upstream sends the image about once.
 */
export class ReadThrough {
  readonly #origin: OriginFetch
  readonly #metadata: ReadThroughMetadata
  readonly #peers: OriginPeers
  readonly #log: Logger
  readonly #init: Required<ReadThroughInit>
  /** Manifests that stand for "read it from the upstream here": no chunks yet. */
  readonly #fromOrigin = new WeakSet<Manifest>()
  /** `<image>/<manifest sha512>` read whole here and found to be the upstream's bytes, or not. */
  readonly #verified = new Set<string>()
  readonly #forged = new Set<string>()

  constructor (components: { origin: OriginFetch, metadata: ReadThroughMetadata, peers: OriginPeers, logger: Logger }, init: ReadThroughInit = {}) {
    this.#origin = components.origin
    this.#metadata = components.metadata
    this.#peers = components.peers
    this.#log = components.logger
    this.#init = { candidates: init.candidates ?? 3, waitMs: init.waitMs ?? 60_000, minRate: init.minRate ?? 5_000_000 }
  }

  /**
   * The manifest a download of a mirrored image with no data in the mesh uses: after another
   * agent fetched it, the real one (`fetchManifest`); when this agent is the fetcher, one without
   * chunks that `reader` serves from the upstream. Undefined for any other image.
   */
  async manifest (imageId: string, fetchManifest: () => Promise<Manifest | undefined>, opts: AbortOptions = {}): Promise<Manifest | undefined> {
    const image = this.#metadata.getImage(imageId)
    if (image == null || image.status !== 'active' || !isMirrored(image) || this.#metadata.manifestCidOf(imageId) != null) return undefined
    if (!this.#origin.fetching(imageId) && await this.#elsewhere(image, opts)) {
      const deadline = Date.now() + Math.max(this.#init.waitMs, ((image.size ?? 0) / this.#init.minRate) * 1000)
      while (this.#metadata.manifestCidOf(imageId) == null && Date.now() < deadline) {
        opts.signal?.throwIfAborted()
        await sleep(100)
      }
      if (this.#metadata.manifestCidOf(imageId) != null) return await fetchManifest()
      this.#log.warn({ imageId }, 'the agent fetching an image from the upstream did not finish in time; fetching it here')
    }
    const manifest: Manifest = { size: image.size ?? 0, chunkSize: 0, cids: [], md5: image.checksum ?? '', sha512: image.os_hash_value ?? '', staged: false }
    this.#fromOrigin.add(manifest)
    return manifest
  }

  /** Whether another agent agreed to fetch the image (false: this one should). */
  async #elsewhere (image: ImageRecord, opts: AbortOptions): Promise<boolean> {
    const ranked = rank(image.id, [this.#peers.self, ...await this.#peers.known()]).slice(0, this.#init.candidates)
    for (const peer of ranked) {
      if (peer === this.#peers.self) return false
      try {
        if (await this.#peers.ask(peer, image.id, opts)) return true
      } catch (err) {
        this.#log.debug({ imageId: image.id, peer, err: { message: (err as Error).message } }, 'peer did not take the upstream fetch')
      }
    }
    return false
  }

  /**
   * Serves manifests from `manifest` that stand for the upstream; passes any other to `inner`. The
   * first whole read here of an upstream image's data from the mesh is checked against the
   * upstream's own `os_hash_value` (its last bytes withheld until then), since the manifest came
   * from a peer, which may have uploaded other bytes under the upstream image's id.
   */
  reader (inner: ImageReader): ImageReader {
    return {
      read: (imageId, manifest, start, end, opts) => {
        const image = this.#metadata.getImage(imageId)
        if (image == null || !isMirrored(image)) return inner.read(imageId, manifest, start, end, opts)
        if (this.#fromOrigin.has(manifest)) return this.#origin.read(image, start, end, opts?.signal)
        const key = `${imageId}/${manifest.sha512}`
        // Known to be other bytes than the upstream's: the upstream's, passed through, kept nowhere.
        if (this.#forged.has(key)) return this.#origin.passThrough(image, start, end, opts?.signal)
        if (this.#verified.has(key) || start !== 0 || end !== manifest.size - 1) return inner.read(imageId, manifest, start, end, opts)
        return this.#verifiedRead(image, manifest, key, inner, opts)
      }
    }
  }

  async * #verifiedRead (image: ImageRecord, manifest: Manifest, key: string, inner: ImageReader, opts?: AbortOptions): AsyncGenerator<Uint8Array> {
    // The upstream's word when it answers; while it is down, the record's (as mirrored).
    const expected = (await this.#origin.upstreamHash(image.id)) ?? expectedHash(image)
    if (expected == null) {
      yield * inner.read(image.id, manifest, 0, manifest.size - 1, opts)
      return
    }
    if (manifest[expected.algo] !== expected.value || manifest.size !== image.size) {
      this.#forged.add(key)
      this.#log.error({ imageId: image.id }, 'the mesh holds other bytes than the upstream for this image; reading it from the upstream instead')
      yield * this.#origin.passThrough(image, 0, manifest.size - 1, opts?.signal)
      return
    }
    const hash = createHash(expected.algo)
    let held: Uint8Array | undefined
    for await (const part of inner.read(image.id, manifest, 0, manifest.size - 1, opts)) {
      hash.update(part)
      if (held != null) yield held
      held = part
    }
    if (hash.digest('hex') !== expected.value) {
      this.#forged.add(key)
      this.#log.error({ imageId: image.id }, 'the mesh holds other bytes than the upstream for this image; reading it from the upstream from now on')
      throw new ChunkUnavailableError(`The mesh's data for image ${image.id} is not the upstream's (its bytes do not hash to os_hash_value); it is not served.`)
    }
    this.#verified.add(key)
    if (held != null) yield held
  }

  /**
   * A peer asks this agent to fetch an image: it agrees for an upstream image it ranks itself among
   * the first `candidates` for, so a hostile peer cannot make every agent fetch every image.
   */
  async asked (imageId: string): Promise<boolean> {
    const image = this.#metadata.getImage(imageId)
    if (image == null || image.status !== 'active' || !isMirrored(image)) return false
    if (this.#metadata.manifestCidOf(imageId) != null || this.#origin.fetching(imageId)) return true
    const place = rank(imageId, [this.#peers.self, ...await this.#peers.known()]).indexOf(this.#peers.self)
    if (place < 0 || place >= this.#init.candidates) return false
    // Agree only while the upstream answers: an asker then waits for a fetch that can happen.
    if (!await this.#origin.reachable(imageId)) return false
    void this.#origin.fetch(imageId).catch(err => { this.#log.warn({ imageId, err: { message: (err as Error).message } }, 'fetching an image from the upstream failed') })
    return true
  }
}
