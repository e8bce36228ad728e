import { alignedChunks } from './aligned-chunks.ts'
import { HashThread } from './hash-thread.ts'

export interface ImageDigests {
  md5: string
  sha512: string
}

/**
 * The whole-image md5 and sha512 Glance reports, each on its own thread: together they cost ~3x
 * the per-chunk sha256 (REPORT.md section 5), so on the main thread they would cap uploads.
 */
export class ImageHasher {
  readonly #md5 = new HashThread('md5')
  readonly #sha512 = new HashThread('sha512')
  #chunks: Uint8Array[] | undefined

  get healthy (): boolean {
    return this.#md5.healthy && this.#sha512.healthy
  }

  /**
   * Chunk buffers for the uploads this hasher serves, the same shared memory for each of them:
   * the workers keep every memory they were sent alive until their own heaps are collected,
   * which, allocating next to nothing, they seldom are; a memory per upload grew the agent's RSS
   * by its 9 MiB per upload (docs/benchmarks.md, upload step 5). The caller may use them until
   * it has finished or reset the digests.
   */
  chunkBuffers (chunkSize: number, count: number): Uint8Array[] {
    if (this.#chunks?.length !== count || this.#chunks[0].length !== chunkSize) this.#chunks = alignedChunks(chunkSize, count)
    return [...this.#chunks]
  }

  /** Settles only when neither worker reads `bytes` any more, even if one of them failed. */
  async update (bytes: Uint8Array): Promise<void> {
    const results = await Promise.allSettled([this.#md5.update(bytes), this.#sha512.update(bytes)])
    for (const result of results) if (result.status === 'rejected') throw result.reason
  }

  /** Finishes both digests and starts afresh, ready for the next image. */
  async digest (): Promise<ImageDigests> {
    const [md5, sha512] = await Promise.all([this.#md5.digest(), this.#sha512.digest()])
    return { md5, sha512 }
  }

  async reset (): Promise<void> {
    await Promise.all([this.#md5.reset(), this.#sha512.reset()])
  }

  // An idle hasher must not keep the process alive; a busy one must, or awaiting its digest could
  // end the event loop.
  ref (): void {
    this.#md5.ref()
    this.#sha512.ref()
  }

  unref (): void {
    this.#md5.unref()
    this.#sha512.unref()
  }

  async terminate (): Promise<void> {
    await Promise.all([this.#md5.terminate(), this.#sha512.terminate()])
  }
}
