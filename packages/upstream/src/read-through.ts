import { createHash } from 'node:crypto'
import { ChunkUnavailableError } from '@peerglance/interface'
import type { AbortOptions, ImageReader, ImageRecord, Logger, Manifest, MetadataStore } from '@peerglance/interface'
import { isMirrored } from './mirror.ts'
import { expectedHash } from './origin-fetch.ts'
import type { OriginFetch } from './origin-fetch.ts'

/** The metadata the read-through looks at: the image, and whether its manifest is known yet. */
export type ReadThroughMetadata = Pick<MetadataStore, 'getImage'> & { manifestCidOf: (imageId: string) => string | null }

/**
 * Downloads of upstream images: the first read of one with no data in the mesh reads it through
 * (OriginFetch, shared with the other agents reading it at the same time); data from the mesh is
 * checked against the upstream's own hash before it is served.
 */
export class ReadThrough {
  readonly #origin: OriginFetch
  readonly #metadata: ReadThroughMetadata
  readonly #log: Logger
  /** Manifests that stand for "read it from the upstream here": no chunks yet. */
  readonly #fromOrigin = new WeakSet<Manifest>()
  /** `<image>/<manifest sha512>` read whole here and found to be the upstream's bytes, or not. */
  readonly #verified = new Set<string>()
  readonly #forged = new Set<string>()

  constructor (components: { origin: OriginFetch, metadata: ReadThroughMetadata, logger: Logger }) {
    this.#origin = components.origin
    this.#metadata = components.metadata
    this.#log = components.logger
  }

  /**
   * The manifest a download of a mirrored image with no data in the mesh uses: one without
   * chunks, which `reader` serves by reading the image through. Undefined for any other image.
   * `evicted`: the image names a manifest, but no agent could send it (every agent evicted the
   * image): it is read through again.
   */
  manifest (imageId: string, evicted = false): Manifest | undefined {
    const image = this.#metadata.getImage(imageId)
    if (image == null || image.status !== 'active' || !isMirrored(image) || (!evicted && this.#metadata.manifestCidOf(imageId) != null)) return undefined
    if (evicted) this.#log.warn({ imageId }, 'no agent holds this upstream image any more; reading it through again')
    const manifest: Manifest = { size: image.size ?? 0, chunkSize: 0, cids: [], md5: image.checksum ?? '', sha512: image.os_hash_value ?? '', staged: false }
    this.#fromOrigin.add(manifest)
    return manifest
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
        const fromMesh = this.#verified.has(key) || start !== 0 || end !== manifest.size - 1
          ? inner.read(imageId, manifest, start, end, opts)
          : this.#verifiedRead(image, manifest, key, inner, opts)
        return this.#orUpstream(image, fromMesh, start, end, opts)
      }
    }
  }

  /**
   * The mesh's bytes, or, when no agent can send any of them (every agent evicted the image's
   * chunks), the image read through again from the upstream.
   */
  async * #orUpstream (image: ImageRecord, fromMesh: AsyncIterable<Uint8Array>, start: number, end: number, opts?: AbortOptions): AsyncGenerator<Uint8Array> {
    let sent = false
    try {
      for await (const part of fromMesh) {
        sent = true
        yield part
      }
    } catch (err) {
      if (sent || !(err instanceof ChunkUnavailableError) || opts?.signal?.aborted === true) throw err
      this.#log.warn({ imageId: image.id, err: { message: err.message } }, 'no agent could send this upstream image\'s data; reading it through again')
      yield * this.#origin.read(image, start, end, opts?.signal)
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
}
