import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError, defaultConfig, loadConfig, parseByteSize, parseListen, type AgentConfig, type ConfigOverrides } from '../src/index.ts'
import { CONFIG_YAML_PATH, renderConfigYaml } from '../src/render-yaml.ts'

const dir = mkdtempSync(join(tmpdir(), 'peerglance-config-'))
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

let n = 0
function yamlFile (text: string): string {
  const file = join(dir, `c${n++}.yaml`)
  writeFileSync(file, text)
  return file
}

function errorOf (fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    expect((err as Error).name).toBe('ConfigError')
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

describe('config/peerglance.yaml', () => {
  it('loads to exactly the embedded defaults', () => {
    expect(loadConfig({ file: CONFIG_YAML_PATH })).toEqual(defaultConfig())
  })

  it('is what the schema renders, so its comments and defaults cannot drift', () => {
    expect(readFileSync(CONFIG_YAML_PATH, 'utf8')).toBe(renderConfigYaml())
  })

  it('documents every option with a description and a default', () => {
    const text = readFileSync(CONFIG_YAML_PATH, 'utf8')
    const leaves = (obj: object, prefix = ''): string[] => Object.entries(obj).flatMap(([k, v]) =>
      v !== null && typeof v === 'object' && !Array.isArray(v) ? leaves(v, `${prefix}${k}.`) : [`${prefix}${k}`])
    for (const path of leaves(defaultConfig())) {
      const key = path.split('.').at(-1) as string
      // The line above each option is a comment.
      expect(text, path).toMatch(new RegExp(`#[^\\n]*\\n\\s*${key}: `))
    }
  })
})

describe('defaultConfig', () => {
  it('has the documented defaults', () => {
    const c = defaultConfig()
    expect(c.dataDir).toBe('./data')
    expect(c.api).toEqual({ listen: '127.0.0.1:9292', publicEndpoint: null, tls: { cert: null, key: null }, requestTimeoutMs: 0 })
    expect(c.log).toEqual({ level: 'info', pretty: 'auto' })
    expect(c.auth).toEqual({
      mode: 'noauth',
      noauth: { projectId: 'admin', userId: 'admin', roles: ['admin', 'member', 'reader'], allowRemote: false },
      keystone: { url: null, username: 'glance', password: '', projectName: 'service', userDomainName: 'Default', projectDomainName: 'Default', region: null, cacheSeconds: 300 }
    })
    expect(c.audit).toEqual({ file: null })
    expect(c.chunks).toEqual({ chunkSize: 1048576, writeConcurrency: 8, encryptionKeyFile: '' })
    expect(c.cache).toEqual({ maxBytes: '0', maxDiskPercent: 80, highWatermark: 0.9, lowWatermark: 0.75, minReplicas: 2, reserveBytes: '256MB', sweepIntervalMs: 30000, prefetchIntervalMs: 300000, prefetchTags: [] })
    expect(c.glance.imageSizeCap).toBe(2 ** 40)
    expect(c.glance.userStorageQuota).toBe('0')
    expect(c.glance.enabledImportMethods).toEqual(['glance-direct'])
    expect(c.glance.diskFormats).toContain('qcow2')
    expect(c.mesh).toEqual({ listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], key: '', operatorKey: '', credentialFile: '', revokedPeers: [], fetchTimeoutMs: 5000, syncIntervalMs: 2000, bulkPort: 0, mdns: false })
    expect(c.shutdown.graceMs).toBe(10000)
  })

  it('is deeply frozen', () => {
    const c = defaultConfig()
    expect(Object.isFrozen(c)).toBe(true)
    expect(Object.isFrozen(c.auth.noauth.roles)).toBe(true)
    expect(() => { (c.api as { listen: string }).listen = 'x:1' }).toThrow(TypeError)
  })
})

describe('loadConfig', () => {
  it('takes file values over defaults and overrides over the file', () => {
    const file = yamlFile('dataDir: /srv/pg\napi:\n  listen: 0.0.0.0:9000\n  requestTimeoutMs: 5000\nlog:\n  level: debug\nauth:\n  noauth:\n    allowRemote: true\n')
    const c = loadConfig({ file, overrides: { api: { listen: '[::1]:9393' } } })
    expect(c.dataDir).toBe('/srv/pg')
    expect(c.api.listen).toBe('[::1]:9393')
    // Objects merge key by key: the file's sibling survives the override.
    expect(c.api.requestTimeoutMs).toBe(5000)
    expect(c.log).toEqual({ level: 'debug', pretty: 'auto' })
    expect(c.chunks).toEqual(defaultConfig().chunks)
  })

  it('replaces arrays instead of merging them', () => {
    const file = yamlFile('glance:\n  diskFormats: [raw, qcow2, iso]\n')
    expect(loadConfig({ file }).glance.diskFormats).toEqual(['raw', 'qcow2', 'iso'])
    expect(loadConfig({ file, overrides: { glance: { diskFormats: ['raw'] } } }).glance.diskFormats).toEqual(['raw'])
  })

  it('ignores overrides left undefined, as unset CLI flags are', () => {
    const file = yamlFile('dataDir: /srv/pg\n')
    expect(loadConfig({ file, overrides: { dataDir: undefined } }).dataDir).toBe('/srv/pg')
  })

  it('treats an empty or comment-only file as all defaults', () => {
    expect(loadConfig({ file: yamlFile('') })).toEqual(defaultConfig())
    expect(loadConfig({ file: yamlFile('# nothing here\n') })).toEqual(defaultConfig())
  })

  it('does not share state between calls', () => {
    const a = loadConfig({ overrides: { mesh: { bootstrap: ['/ip4/10.0.0.2/tcp/4001'] } } })
    expect(a.mesh.bootstrap).toHaveLength(1)
    expect(loadConfig().mesh.bootstrap).toEqual([])
  })

  it('names a missing file', () => {
    const file = join(dir, 'absent.yaml')
    const err = errorOf(() => loadConfig({ file }))
    expect(err.message).toBe(`cannot read config file ${file}: no such file`)
    expect(err.file).toBe(file)
  })

  it('names a file with a YAML syntax error', () => {
    const file = yamlFile('api:\n  listen: [unclosed\n')
    expect(errorOf(() => loadConfig({ file })).message).toMatch(new RegExp(`^cannot parse config file ${file}: `))
  })

  it('rejects a file whose top level is not a mapping', () => {
    const file = yamlFile('- a\n- b\n')
    expect(errorOf(() => loadConfig({ file })).message).toMatch(/top level must be a mapping/)
  })

  it('names an unknown key by its path', () => {
    const file = yamlFile('api:\n  listen: 127.0.0.1:9292\n  lisen: 1\nbogus: true\n')
    const err = errorOf(() => loadConfig({ file }))
    expect(err.message).toContain('api.lisen: unknown option')
    expect(err.message).toContain('bogus: unknown option')
    expect(err.message).toContain(`(file ${file})`)
    expect(err.issues.map(i => i.path).sort()).toEqual(['api.lisen', 'bogus'])
  })

  it('suggests the camelCase name for a glance-api.conf spelling', () => {
    const err = errorOf(() => loadConfig({ overrides: { glance: { image_size_cap: 1 } } as unknown as ConfigOverrides }))
    expect(err.message).toBe('invalid config: glance.image_size_cap: unknown option (did you mean imageSizeCap?)')
  })

  it('reports a key named __proto__ instead of letting it touch the prototype', () => {
    const err = errorOf(() => loadConfig({ file: yamlFile('__proto__:\n  polluted: true\n') }))
    expect(err.message).toContain('__proto__: unknown option')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it.each([
    ['nope'],
    ['127.0.0.1'],
    ['127.0.0.1:65536'],
    ['127.0.0.1:65536'],
    ['::1:9292'],
    [':9292']
  ])('rejects api.listen %s', (listen) => {
    const err = errorOf(() => loadConfig({ overrides: { api: { listen } } }))
    expect(err.message).toBe(`invalid config: api.listen: must match HOST:PORT with a port of 0-65535, e.g. 127.0.0.1:9292 or [::1]:9292 (got "${listen}")`)
    expect(err.issues).toEqual([{ path: 'api.listen', message: expect.stringMatching(/^must match HOST:PORT/) }])
  })

  it('rejects a bracketed host that is not IPv6', () => {
    const err = errorOf(() => loadConfig({ overrides: { api: { listen: '[:::]:9292' } } }))
    expect(err.message).toBe('invalid config: api.listen: has a bracketed host that is not an IPv6 address (got "[:::]:9292")')
  })

  it.each([['0.0.0.0:9292'], ['[::]:9292'], ['[fe80::1%eth0]:80'], ['glance.example.net:65535'], ['localhost:1']])('accepts api.listen %s', (listen) => {
    expect(loadConfig({ overrides: { api: { listen }, auth: { noauth: { allowRemote: true } } } }).api.listen).toBe(listen)
  })

  it.each([['0.0.0.0:9292'], ['[::]:9292'], ['10.0.0.2:9292'], ['glance.example.net:9292']])('refuses noauth on the non-loopback api.listen %s', (listen) => {
    const err = errorOf(() => loadConfig({ overrides: { api: { listen } } }))
    expect(err.issues).toEqual([{ path: 'api.listen', message: expect.stringContaining(`${listen} is not a loopback address`) }])
    expect(err.message).toContain('auth.noauth.allowRemote: true')
  })

  it.each([['127.0.0.1:9292'], ['127.0.0.2:1'], ['[::1]:9292'], ['localhost:9292']])('serves noauth on the loopback api.listen %s', (listen) => {
    expect(loadConfig({ overrides: { api: { listen } } }).auth.mode).toBe('noauth')
  })

  it('accepts any address in keystone mode, and requires its url and password', () => {
    const keystone = { url: 'http://127.0.0.1:5000/v3', password: 'secret' }
    expect(loadConfig({ overrides: { api: { listen: '0.0.0.0:9292' }, auth: { mode: 'keystone', keystone } } }).auth.keystone).toMatchObject(keystone)
    const err = errorOf(() => loadConfig({ overrides: { auth: { mode: 'keystone' } } }))
    expect(err.issues).toEqual([
      { path: 'auth.keystone.url', message: 'is required when auth.mode is keystone' },
      { path: 'auth.keystone.password', message: 'is required when auth.mode is keystone' }
    ])
  })

  it('requires both api.tls.cert and api.tls.key', () => {
    const err = errorOf(() => loadConfig({ overrides: { api: { tls: { cert: '/etc/pg/cert.pem' } } } }))
    expect(err.issues).toEqual([{ path: 'api.tls', message: 'needs both cert and key, or neither' }])
  })

  it('rejects a bad log level, listing the levels', () => {
    const err = errorOf(() => loadConfig({ file: yamlFile('log:\n  level: verbose\n') }))
    expect(err.issues).toEqual([{ path: 'log.level', message: 'must be one of fatal, error, warn, info, debug, trace, silent (got "verbose")' }])
  })

  it.each([[4095, 'at least 4096'], [4194305, 'at most 4194304'], [65536.5, 'an integer']])('rejects chunks.chunkSize %s', (chunkSize, why) => {
    const err = errorOf(() => loadConfig({ overrides: { chunks: { chunkSize } } }))
    expect(err.message).toBe(`invalid config: chunks.chunkSize: must be ${why} (got ${chunkSize})`)
  })

  it.each([['10 GB'], ['10gb'], ['1.5GB'], ['10PB'], ['GB'], ['-1']])('rejects glance.userStorageQuota %s', (userStorageQuota) => {
    const err = errorOf(() => loadConfig({ overrides: { glance: { userStorageQuota } } }))
    expect(err.issues[0].path).toBe('glance.userStorageQuota')
    expect(err.message).toMatch(/glance\.userStorageQuota: must be a whole number with an optional unit B, KB, MB, GB or TB/)
  })

  it('rejects a quota too large to count exactly', () => {
    const err = errorOf(() => loadConfig({ overrides: { glance: { userStorageQuota: '99999TB' } } }))
    expect(err.message).toMatch(/glance\.userStorageQuota: is more than 9007199254740991 bytes/)
  })

  it('rejects an unquoted number for userStorageQuota, saying a string is needed', () => {
    const err = errorOf(() => loadConfig({ file: yamlFile('glance:\n  userStorageQuota: 10\n') }))
    expect(err.issues[0]).toEqual({ path: 'glance.userStorageQuota', message: expect.stringMatching(/\(got 10\)$/) })
  })

  it('names a bad array item by its index', () => {
    const err = errorOf(() => loadConfig({ overrides: { glance: { enabledImportMethods: ['glance-direct', 'ftp' as 'copy-image'] } } }))
    expect(err.message).toBe('invalid config: glance.enabledImportMethods[1]: must be one of glance-direct, web-download, copy-image, glance-download (got "ftp")')
  })

  it('rejects a section given as a scalar and a bad publicEndpoint', () => {
    const file = yamlFile('log: debug\napi:\n  publicEndpoint: images.example.net\n')
    const err = errorOf(() => loadConfig({ file }))
    expect(err.issues).toEqual([
      { path: 'api.publicEndpoint', message: 'must be an http(s) URL or null (got "images.example.net")' },
      { path: 'log', message: 'must be a mapping of options (got "debug")' }
    ])
  })

  it('accepts a publicEndpoint URL', () => {
    expect(loadConfig({ overrides: { api: { publicEndpoint: 'https://img.example.net:9292' } } }).api.publicEndpoint).toBe('https://img.example.net:9292')
  })

  it('reports every bad option at once', () => {
    const err = errorOf(() => loadConfig({ overrides: { dataDir: '', chunks: { writeConcurrency: 0 }, shutdown: { graceMs: -1 } } }))
    expect(err.issues.map(i => i.path)).toEqual(['dataDir', 'chunks.writeConcurrency', 'shutdown.graceMs'])
    expect(err.message).toMatch(/^invalid config: dataDir: must not be empty \(got ""\); chunks\.writeConcurrency: must be at least 1 \(got 0\); shutdown\.graceMs: /)
  })

  it('returns a value typed as AgentConfig', () => {
    const c: AgentConfig = loadConfig()
    const level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' = c.log.level
    expect(level).toBe('info')
  })
})

describe('parseByteSize', () => {
  it.each([
    ['0', 0],
    ['512', 512],
    ['512B', 512],
    ['1KB', 1024],
    ['10MB', 10 * 2 ** 20],
    ['10GB', 10 * 2 ** 30],
    ['2TB', 2 * 2 ** 40]
  ])('%s is %d bytes', (s, bytes) => {
    expect(parseByteSize(s)).toBe(bytes)
  })

  it.each([['10 GB'], ['10gb'], ['1.5GB'], ['10KiB'], [''], ['99999TB']])('rejects %j', (s) => {
    expect(() => parseByteSize(s)).toThrow(expect.objectContaining({ name: 'ConfigError' }))
  })
})

describe('parseListen', () => {
  it('splits host and port, removing IPv6 brackets', () => {
    expect(parseListen('127.0.0.1:9292')).toEqual({ host: '127.0.0.1', port: 9292 })
    expect(parseListen('[::1]:9292')).toEqual({ host: '::1', port: 9292 })
    expect(parseListen('[::]:65535')).toEqual({ host: '::', port: 65535 })
    expect(parseListen('images.local:1')).toEqual({ host: 'images.local', port: 1 })
  })

  it('rejects what cannot be bound', () => {
    for (const s of ['nope', '::1:9292', '[::1]', 'host:99999', '[zz]:80']) {
      expect(() => parseListen(s), s).toThrow(expect.objectContaining({ name: 'ConfigError' }))
    }
  })
})

describe('policy file', () => {
  it('reads an oslo.policy YAML or JSON file into policy.rules, under the rules written in the config', () => {
    const file = yamlFile('"publicize_image": "role:admin or role:publisher"\n# a comment\ndownload_image: "rule:default"\n')
    const config = loadConfig({ overrides: { policy: { file, rules: { download_image: '!' } } } })
    expect(config.policy.rules).toEqual({ publicize_image: 'role:admin or role:publisher', download_image: '!' })
    const json = yamlFile('{"get_images": "role:reader"}')
    expect(loadConfig({ overrides: { policy: { file: json } } }).policy.rules).toEqual({ get_images: 'role:reader' })
  })

  it('names a missing file, a non-mapping and a rule that is not a string', () => {
    expect(errorOf(() => loadConfig({ overrides: { policy: { file: join(dir, 'nope.yaml') } } })).message).toBe(`cannot read policy file ${join(dir, 'nope.yaml')}: no such file`)
    const list = yamlFile('- role:admin\n')
    expect(errorOf(() => loadConfig({ overrides: { policy: { file: list } } })).message).toContain('the top level must be a mapping')
    const nested = yamlFile('get_image:\n  - role:admin\n')
    expect(errorOf(() => loadConfig({ overrides: { policy: { file: nested } } })).message).toContain('rule "get_image" must be a check string')
  })
})

describe('upstream', () => {
  it('needs credentials and a Keystone once an upstream is set', () => {
    expect(loadConfig({ overrides: { upstream: { url: 'http://glance:9292', keystone: { url: 'http://ks:5000/v3', username: 'glance', password: 'x' } } } }).upstream.writes).toBe('read-only')
    const noCredentials = errorOf(() => loadConfig({ overrides: { upstream: { url: 'http://glance:9292', keystone: { url: 'http://ks:5000/v3' } } } }))
    expect(noCredentials.message).toMatch(/upstream\.keystone: needs username and password/)
    const noKeystone = errorOf(() => loadConfig({ overrides: { upstream: { region: 'RegionOne', keystone: { applicationCredentialId: 'id', applicationCredentialSecret: 's' } } } }))
    expect(noKeystone.message).toMatch(/upstream\.keystone\.url: is required/)
    expect(errorOf(() => loadConfig({ overrides: { upstream: { writes: 'sometimes' as never } } })).message).toMatch(/upstream\.writes/)
  })
})
