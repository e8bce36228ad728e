#!/usr/bin/env node
// Plain JavaScript so that an old Node fails with a clear message instead of a TypeScript syntax error.
const [major] = process.versions.node.split('.').map(Number)
if (major < 24) {
  console.error(`peerglance needs Node.js 24 or newer (found ${process.versions.node}). Run it through npm (npm start, npx peerglance), which uses the Node the project installs.`)
  process.exit(1)
}
// Count the agent's many short-lived chunk buffers against V8's heap limit, so it collects them
// young instead of running ~80 full collections per GiB moved (docs/benchmarks.md, "The mesh", step 2).
// A V8 flag, not a Node option: NODE_OPTIONS refuses it, so it is set here before anything loads.
const { setFlagsFromString } = await import('node:v8')
setFlagsFromString('--external-memory-accounted-in-global-limit')
await import('../src/bin.ts')
