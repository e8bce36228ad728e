import { existsSync } from 'node:fs'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { tmpDir } from '@peerglance/testing'
import { serviceSetup, usersLock } from './service-setup.ts'

/**
 * A service as the project's scripts run one (`start` quick when it is up, `stop`), logging what
 * it did; "up" is a file its health URL looks at.
 */
let dir: string
let healthUrl: string
let script: string
let server: ReturnType<typeof createServer>

beforeEach(async () => {
  dir = await tmpDir('peerglance-service-')
  script = join(dir, `service-${process.pid}-${Date.now()}.sh`)
  await writeFile(script, [
    'up="$(dirname "$0")/up"; log="$(dirname "$0")/log"',
    'case $1 in',
    '  start) [ -e "$up" ] || { touch "$up"; echo started >>"$log"; } ;;',
    '  stop) rm -f "$up"; echo stopped >>"$log" ;;',
    'esac'
  ].join('\n'))
  server = createServer((_req, res) => { res.statusCode = existsSync(join(dir, 'up')) ? 200 : 503; res.end() })
  server.listen(0, '127.0.0.1')
  await new Promise(resolve => server.once('listening', resolve))
  healthUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
})

afterEach(async () => {
  server.close()
  await rm(dir, { recursive: true, force: true })
  await rm(usersLock(script), { force: true })
  await rm(`${usersLock(script)}.started`, { force: true })
})

async function log (): Promise<string[]> {
  return existsSync(join(dir, 'log')) ? (await readFile(join(dir, 'log'), 'utf8')).trim().split('\n') : []
}

describe('a test service shared by test runs at once', () => {
  it('is stopped by the last run to finish, not by the one that started it while another still uses it', async () => {
    const first = await serviceSetup(script, healthUrl)
    const second = await serviceSetup(script, healthUrl)
    expect(await log()).toEqual(['started'])
    await first()
    expect(await log()).toEqual(['started'])
    expect(existsSync(join(dir, 'up'))).toBe(true)
    await second()
    expect(await log()).toEqual(['started', 'stopped'])
    // And the next run starts it again.
    const third = await serviceSetup(script, healthUrl)
    await third()
    expect(await log()).toEqual(['started', 'stopped', 'started', 'stopped'])
  })

  it('stays up when it was up before any test run', async () => {
    await writeFile(join(dir, 'up'), '')
    const run = await serviceSetup(script, healthUrl)
    await run()
    expect(await log()).toEqual([])
    expect(existsSync(join(dir, 'up'))).toBe(true)
  })
})
