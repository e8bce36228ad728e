import { describe, expect, it } from 'vitest'
import { AGENT_USAGE, loadConfig, parseAgentArgs, type ConfigError } from '../src/index.ts'

function errorOf (argv: string[]): ConfigError {
  try {
    parseAgentArgs(argv)
  } catch (err) {
    expect((err as Error).name).toBe('ConfigError')
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

describe('parseAgentArgs', () => {
  it('returns no overrides for no flags', () => {
    expect(parseAgentArgs([])).toEqual({ help: false, overrides: {} })
  })

  it('reads --config', () => {
    expect(parseAgentArgs(['--config', '/etc/peerglance.yaml'])).toEqual({ help: false, configFile: '/etc/peerglance.yaml', overrides: {} })
    expect(parseAgentArgs(['--config=/etc/pg.yaml']).configFile).toBe('/etc/pg.yaml')
  })

  it('maps each flag to its option', () => {
    expect(parseAgentArgs(['--data-dir', '/srv/pg']).overrides).toEqual({ dataDir: '/srv/pg' })
    expect(parseAgentArgs(['--api-listen', '[::]:9292']).overrides).toEqual({ api: { listen: '[::]:9292' } })
    expect(parseAgentArgs(['--log-level', 'debug']).overrides).toEqual({ log: { level: 'debug' } })
    expect(parseAgentArgs(['--p2p-listen', '/ip4/0.0.0.0/tcp/4001']).overrides).toEqual({ mesh: { listen: ['/ip4/0.0.0.0/tcp/4001'] } })
    expect(parseAgentArgs(['--bootstrap', '/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWA']).overrides).toEqual({ mesh: { bootstrap: ['/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWA'] } })
  })

  it('collects repeated --bootstrap and --p2p-listen in order', () => {
    const { overrides } = parseAgentArgs([
      '--bootstrap', '/ip4/10.0.0.2/tcp/4001/p2p/A',
      '--p2p-listen', '/ip4/0.0.0.0/tcp/4001',
      '--bootstrap', '/ip4/10.0.0.3/tcp/4001/p2p/B',
      '--p2p-listen', '/ip6/::/tcp/4001'
    ])
    expect(overrides).toEqual({ mesh: { bootstrap: ['/ip4/10.0.0.2/tcp/4001/p2p/A', '/ip4/10.0.0.3/tcp/4001/p2p/B'], listen: ['/ip4/0.0.0.0/tcp/4001', '/ip6/::/tcp/4001'] } })
  })

  it('produces overrides that loadConfig applies over the defaults', () => {
    const { overrides } = parseAgentArgs(['--data-dir', '/srv/pg', '--api-listen', '0.0.0.0:9292', '--log-level', 'warn', '--bootstrap', '/ip4/10.0.0.2/tcp/4001/p2p/A'])
    const c = loadConfig({ overrides: { ...overrides, auth: { noauth: { allowRemote: true } } } })
    expect(c.dataDir).toBe('/srv/pg')
    expect(c.api.listen).toBe('0.0.0.0:9292')
    expect(c.log.level).toBe('warn')
    expect(c.mesh.bootstrap).toEqual(['/ip4/10.0.0.2/tcp/4001/p2p/A'])
    expect(c.mesh.listen).toEqual(['/ip4/127.0.0.1/tcp/0'])
  })

  it('returns help for --help and -h', () => {
    expect(parseAgentArgs(['--help'])).toEqual({ help: true, overrides: {} })
    expect(parseAgentArgs(['-h']).help).toBe(true)
  })

  it('names an unknown flag', () => {
    expect(errorOf(['--api-port', '9292']).message).toBe('unknown option --api-port; see peerglance agent --help')
    expect(errorOf(['-x']).message).toBe('unknown option -x; see peerglance agent --help')
  })

  it('names a flag that is missing its value', () => {
    expect(errorOf(['--data-dir']).message).toBe('option --data-dir needs a value')
    expect(errorOf(['--config', '--log-level', 'info']).message).toBe('option --config needs a value')
  })

  it('rejects a stray argument', () => {
    expect(errorOf(['serve']).message).toBe('unexpected argument serve; peerglance agent takes only options')
  })

  it('names the flag whose value is invalid', () => {
    expect(errorOf(['--api-listen', 'nope']).message).toBe('invalid arguments: --api-listen: must match HOST:PORT with a port of 0-65535, e.g. 127.0.0.1:9292 or [::1]:9292 (got "nope")')
    expect(errorOf(['--log-level', 'loud']).message).toMatch(/^invalid arguments: --log-level: must be one of fatal, error/)
    expect(errorOf(['--bootstrap', '10.0.0.2:4001']).message).toMatch(/^invalid arguments: --bootstrap: must be a multiaddr/)
    expect(errorOf(['--data-dir', '']).issues).toEqual([{ path: '--data-dir', message: 'must not be empty (got "")' }])
  })
})

describe('AGENT_USAGE', () => {
  it('describes every flag', () => {
    for (const flag of ['--config FILE', '--data-dir DIR', '--api-listen HOST:PORT', '--log-level LEVEL', '--p2p-listen MULTIADDR', '--bootstrap MULTIADDR', '--help']) {
      expect(AGENT_USAGE).toContain(flag)
    }
    expect(AGENT_USAGE).toContain('(default: 127.0.0.1:9292)')
  })
})
