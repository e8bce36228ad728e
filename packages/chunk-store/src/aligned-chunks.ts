const WASM_PAGE = 64 * 1024

// The project's libs (es2024, no DOM) carry no WebAssembly types; this is the part used here.
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number, maximum: number, shared: boolean }) => { buffer: ArrayBuffer | SharedArrayBuffer }
}

/**
 * `count` chunk buffers carved from one shared WebAssembly memory. Its pages are mapped whole, so
 * every buffer starts on a page boundary, which O_DIRECT writes need (chunk-files.ts); and it is a
 * SharedArrayBuffer, which the hash workers read without a copy. One memory per upload rather than
 * one per chunk: V8 reserves address space for each. `shared: false` gives a plain ArrayBuffer
 * instead, for buffers no worker reads: copying into shared memory was 2-8 times slower here
 * (V8 copies into it word by word, as other threads may look).
 */
export function alignedChunks (chunkSize: number, count: number, { shared = true } = {}): Uint8Array[] {
  const slot = Math.ceil(chunkSize / WASM_PAGE) * WASM_PAGE
  const pages = slot / WASM_PAGE * count
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared })
  return Array.from({ length: count }, (_, i) => new Uint8Array(memory.buffer, i * slot, chunkSize))
}
