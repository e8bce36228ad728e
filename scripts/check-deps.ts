// Checks the dependency direction between workspaces (docs/architecture.md): each package's
// source may import only the @peerglance packages listed here, and the domain no I/O library.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'

const ALLOWED: Record<string, readonly string[]> = {
  interface: [],
  config: [],
  'glance-domain': ['interface'],
  'metadata-store': ['interface'],
  'chunk-store': ['interface'],
  'image-cache': ['interface'],
  mesh: ['interface'],
  'auth-keystone': ['interface'],
  'glance-api': ['interface', 'glance-domain'],
  upstream: ['interface'],
  agent: ['interface', 'config', 'glance-domain', 'metadata-store', 'chunk-store', 'image-cache', 'glance-api', 'mesh', 'auth-keystone', 'upstream'],
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
/** Relative imports, file to files, to find modules that import each other. */
const imports = new Map<string, string[]>()
const packages = readdirSync('packages')
for (const pkg of packages) {
  const allowed = ALLOWED[pkg]
  if (allowed == null) {
    problems.push(`packages/${pkg}: not listed in scripts/check-deps.ts`)
    continue
  }
  for (const file of sources(join('packages', pkg, 'src'))) {
    imports.set(file, [])
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)) {
      if (spec.startsWith('.')) imports.get(file)?.push(normalize(join(dirname(file), spec)))
      const ours = /^@peerglance\/([^/]+)/.exec(spec)?.[1]
      if (ours != null && ours !== pkg && !allowed.includes(ours)) problems.push(`${file}: may not import @peerglance/${ours}`)
      if (FORBIDDEN[pkg]?.test(spec) === true) problems.push(`${file}: may not import ${spec}`)
    }
  }
}
// Modules that import each other (even for types only) are one module in two files: shared
// declarations belong in a module of their own.
const state = new Map<string, 'open' | 'done'>()
function visit (file: string, path: string[]): void {
  if (state.get(file) === 'done') return
  if (state.get(file) === 'open') {
    problems.push(`import cycle: ${[...path.slice(path.indexOf(file)), file].join(' -> ')}`)
    return
  }
  state.set(file, 'open')
  for (const next of imports.get(file) ?? []) visit(next, [...path, file])
  state.set(file, 'done')
}
for (const file of imports.keys()) visit(file, [])

if (problems.length > 0) {
  console.error(`dependency rules broken:\n  ${problems.join('\n  ')}`)
  process.exit(1)
}
console.log(`dependency rules hold for ${packages.length} packages`)
