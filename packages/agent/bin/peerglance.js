#!/usr/bin/env node
// Plain JavaScript so that an old Node fails with a clear message instead of a TypeScript syntax error.
const [major] = process.versions.node.split('.').map(Number)
if (major < 24) {
  console.error(`peerglance needs Node.js 24 or newer (found ${process.versions.node}). Run it through npm (npm start, npx peerglance), which uses the Node the project installs.`)
  process.exit(1)
}
await import('../src/bin.ts')
