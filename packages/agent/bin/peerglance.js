#!/usr/bin/env node
// Plain JavaScript so that an old Node fails with a clear message instead of a TypeScript syntax error.
const [major] = process.versions.node.split('.').map(Number)
if (major < 24) {
  console.error(`peerglance needs Node.js 24 or newer (found ${process.versions.node}). Run it through npm (npm start, npx peerglance), which uses the Node the project installs.`)
  process.exit(1)
}
// The agent's memory (docs/benchmarks.md, "Upload CPU and agent memory"): V8 grows the young
// generation to 2 x 32 MiB and keeps it, and glibc keeps freed buffers in its heap once its dynamic
// mmap threshold has risen. Capped at 2 x 2 MiB and with a fixed threshold, the idle agent holds
// ~25 MB less and an upload's peak ~110 MB less. 2 x 8 MiB held 5-10 MB more while data moves,
// for no CPU measured since chunks are received into slots (swarm and agent-to-agent A/B, session
// 8: "Where an agent's RSS goes"; before the slots, 4 and below cost 20-60 % on the mesh path).
// And no full collection below a 64 MiB old generation (V8 skips them under an
// embedder-set initial size): after rest V8 left the limit ~8 MB above the live ~45 MB, less than
// the young generation's capacity, so the first promotions of every transfer started 2-4 full
// collections, 0.15-0.3 CPU-s of V8's helper threads per downloader in the swarm (docs/benchmarks.md,
// "V8's full collections during a download"). All take effect only at process start: the agent
// replaces itself once (same pid).
if (process.argv[2] === 'agent' && typeof process.execve === 'function' && !`${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`.includes('--max-semi-space-size')) {
  const env = { MALLOC_MMAP_THRESHOLD_: String(128 * 1024), ...process.env }
  process.execve(process.execPath, [process.execPath, '--max-semi-space-size=2', '--initial-old-space-size=64', ...process.execArgv, ...process.argv.slice(1)], env)
}
// Count the agent's many short-lived chunk buffers against V8's heap limit, so it collects them
// young instead of running ~80 full collections per GiB moved (docs/benchmarks.md, "The mesh", step 2).
// A V8 flag, not a Node option: NODE_OPTIONS refuses it, so it is set here before anything loads.
const { setFlagsFromString } = await import('node:v8')
setFlagsFromString('--external-memory-accounted-in-global-limit')
await import('../src/bin.ts')
