// Checks the dependency direction between workspaces (docs/architecture.md): each package's
// source may import only the @peerglance packages listed here, and the domain no I/O library.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

const ALLOWED: Record<string, readonly string[]> = {
  interface: [],
  config: [],
  'glance-domain': ['interface'],
  'metadata-store': ['interface'],
  'chunk-store': ['interface'],
  mesh: ['interface'],
  'glance-api': ['interface', 'glance-domain'],
  agent: ['interface', 'config', 'glance-domain', 'metadata-store', 'chunk-store', 'glance-api', 'mesh'],
  testing: ['agent', 'config', 'interface', 'chunk-store']
}

/** The domain is rules over ports: no HTTP, no database, no network, no files. */
const FORBIDDEN: Record<string, RegExp> = {
  'glance-domain': /^(fastify|level|classic-level|libp2p|@libp2p\/.*|node:fs.*|node:net|node:http)$/,
  'glance-api': /^(level|classic-level|libp2p|@libp2p\/.*)$/
}

function * sources (dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) yield * sources(path)
    else if (name.endsWith('.ts')) yield path
  }
}

const problems: string[] = []
const packages = readdirSync('packages')
for (const pkg of packages) {
  const allowed = ALLOWED[pkg]
  if (allowed == null) {
    problems.push(`packages/${pkg}: not listed in scripts/check-deps.ts`)
    continue
  }
  for (const file of sources(join('packages', pkg, 'src'))) {
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)) {
      const ours = /^@peerglance\/([^/]+)/.exec(spec)?.[1]
      if (ours != null && ours !== pkg && !allowed.includes(ours)) problems.push(`${file}: may not import @peerglance/${ours}`)
      if (FORBIDDEN[pkg]?.test(spec) === true) problems.push(`${file}: may not import ${spec}`)
    }
  }
}
if (problems.length > 0) {
  console.error(`dependency rules broken:\n  ${problems.join('\n  ')}`)
  process.exit(1)
}
console.log(`dependency rules hold for ${packages.length} packages`)
