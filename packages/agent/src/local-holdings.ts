import { statfs } from 'node:fs/promises'
import type { FsChunkStore } from '@peerglance/chunk-store'
import type { Holdings } from '@peerglance/image-cache'
import type { ImageReader, Manifest, ManifestSource } from '@peerglance/interface'
import type { LevelMetadataStore } from '@peerglance/metadata-store'
import type { Mesh } from '@peerglance/mesh'

export interface LocalHoldingsComponents {
  metadata: LevelMetadataStore
  chunks: FsChunkStore
  mesh: Mesh
  /** Each image's manifest, fetched from peers when this agent has never held it. */
  manifests: ManifestSource
  /** Reads an image whole to keep it (the mesh's reader, with the upstream's read-through when there is one). */
  reader: ImageReader
  /** Where the chunk files live, for the file system's free space. */
  dataDir: string
  /** Complete copies of the image outside the mesh: the upstream Glance's, for an image mirrored from it. */
  copiesElsewhere?: (imageId: string, manifest: Manifest) => Promise<number>
}

/** The image cache's view of this agent: its manifests, its chunk files, its disk and the mesh. */
export function localHoldings (c: LocalHoldingsComponents): Holdings {
  return {
    async held () {
      const out = []
      for (const image of c.metadata.images()) {
        if (image.size == null || image.status === 'deleted') continue
        const manifest = await c.metadata.getManifest(image.id)
        if (manifest == null) continue
        out.push({ imageId: image.id, size: image.size, bytes: Math.round(image.size * await c.mesh.localShare(manifest)) })
      }
      return out
    },
    async replicas (imageId, enough) {
      const manifest = await c.metadata.getManifest(imageId)
      if (manifest == null) return 0
      const elsewhere = await c.copiesElsewhere?.(imageId, manifest) ?? 0
      return elsewhere >= enough ? elsewhere : elsewhere + await c.mesh.completeCopies(manifest, { enough: enough - elsewhere })
    },
    async fetch (imageId, signal) {
      const manifest = await c.manifests.fetch(imageId)
      if (manifest == null || manifest.size === 0) return
      // Reading the whole image through the mesh keeps every chunk it fetches.
      for await (const _ of c.reader.read(imageId, manifest, 0, manifest.size - 1, { signal })) { /* kept by the swarm, or the read-through */ }
    },
    async drop (imageId) {
      await c.mesh.forgetImage(imageId)
      await c.metadata.manifestDropped(imageId)
    },
    async usage () {
      const fs = await statfs(c.dataDir)
      return { used: c.chunks.bytesStored, free: fs.bavail * fs.bsize, total: fs.blocks * fs.bsize }
    }
  }
}
