import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const SCRIPT = fileURLToPath(new URL('../../scripts/keystone.sh', import.meta.url))

async function answers (url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(2000) })).ok
  } catch {
    return false
  }
}

/**
 * Starts the test Keystone (scripts/keystone.sh: MariaDB, memcached, uwsgi) unless it already
 * runs, and stops it afterwards only if it was started here.
 */
export default async function setup (): Promise<() => void> {
  const wasUp = await answers(`http://127.0.0.1:${process.env.KS_PORT ?? '5000'}/v3`)
  execFileSync('bash', [SCRIPT, 'start'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 })
  return () => {
    if (!wasUp) execFileSync('bash', [SCRIPT, 'stop'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 120_000 })
  }
}
