import { execFileSync } from 'node:child_process'

async function answers (url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(2000) })).ok
  } catch {
    return false
  }
}

/**
 * A vitest globalSetup for a test service started by a project script (`SCRIPT start`, quick
 * when it is up already): starts it unless `healthUrl` answers, and stops it afterwards
 * (`SCRIPT stop`) only if it was started here.
 */
export async function serviceSetup (script: string, healthUrl: string): Promise<() => void> {
  const wasUp = await answers(healthUrl)
  execFileSync('bash', [script, 'start'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 })
  return () => {
    if (!wasUp) execFileSync('bash', [script, 'stop'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 120_000 })
  }
}
