import type { AbortOptions, Manifest, ManifestBook, ManifestSource } from '@peerglance/interface'

export interface PeerManifestsComponents {
  /** The manifests this agent keeps (the metadata store). */
  book: ManifestBook
  /** Fetches manifest bytes from peers, checked against the CID (Mesh.fetchManifest). */
  peers: { fetchManifest: (imageId: string, manifestCid: string) => Promise<Uint8Array> }
}

/**
 * An image's manifest: this agent's copy, or else one fetched from peers and kept. One fetch per
 * image at a time, however many downloads wait for it; it runs to its own timeout rather than
 * any one caller's signal, since the other callers still want it.
 */
export class PeerManifests implements ManifestSource {
  readonly #c: PeerManifestsComponents
  readonly #pending = new Map<string, Promise<Manifest | undefined>>()

  constructor (components: PeerManifestsComponents) {
    this.#c = components
  }

  async fetch (imageId: string, _opts?: AbortOptions): Promise<Manifest | undefined> {
    const local = await this.#c.book.getManifest(imageId)
    if (local != null) return local
    let pending = this.#pending.get(imageId)
    if (pending == null) {
      pending = this.#fetch(imageId).finally(() => this.#pending.delete(imageId))
      this.#pending.set(imageId, pending)
    }
    return await pending
  }

  async #fetch (imageId: string): Promise<Manifest | undefined> {
    const cid = this.#c.book.manifestCidOf(imageId)
    if (cid == null) return undefined
    return await this.#c.book.manifestArrived(imageId, await this.#c.peers.fetchManifest(imageId, cid))
  }
}
