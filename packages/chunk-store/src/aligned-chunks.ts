const WASM_PAGE = 64 * 1024

// The project's libs (es2024, no DOM) carry no WebAssembly types; this is the part used here.
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number, maximum: number, shared: boolean }) => { buffer: ArrayBuffer | SharedArrayBuffer }
}

/**
 * `count` chunk buffers carved from one shared WebAssembly memory. Its pages are mapped whole, so
 * every buffer starts on a page boundary, which O_DIRECT reads and writes need (chunk-files.ts).
 * Shared, so the hash workers read it without a copy, and so V8 does not count it as external
 * memory: a plain memory's bytes are, and the receive and read slots' 41 MiB, made at a
 * downloader's first chunks, started 1-2 full collections in each of the swarm's downloaders
 * (docs/benchmarks.md, "V8's full collections during a download"). Copying into it costs more
 * than into plain memory (V8 copies word by word, as other threads may look): 16 KiB pieces, 65-77
 * against 38 ms per GiB. One memory per set rather than one per chunk: V8 reserves address space
 * for each.
 */
export function alignedChunks (chunkSize: number, count: number): Uint8Array[] {
  const slot = Math.ceil(chunkSize / WASM_PAGE) * WASM_PAGE
  const pages = slot / WASM_PAGE * count
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true })
  return Array.from({ length: count }, (_, i) => new Uint8Array(memory.buffer, i * slot, chunkSize))
}
