import { execFileSync, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'

async function answers (url: string): Promise<boolean> {
  try {
    // Generous: a service that is up but slow (a loaded machine) must not count as down, or the
    // run would think it started it and stop it at the end.
    return (await fetch(url, { signal: AbortSignal.timeout(10_000) })).ok
  } catch {
    return false
  }
}

/** flock's exit code when the lock is taken (`-E`): another test run still uses the service. */
const IN_USE = 75

/**
 * The lock every test run using a service holds shared while it runs, so that a run stops the
 * service only when no other run (another checkout's, at the same time) still uses it.
 */
export function usersLock (script: string): string {
  return join(tmpdir(), `peerglance-${basename(script, '.sh')}.users.lock`)
}

/**
 * Holds `lock` shared until the returned function is called or this process ends: a `flock`
 * child whose command waits for its stdin to close.
 */
async function holdShared (lock: string): Promise<() => Promise<void>> {
  const holder = spawn('flock', ['--shared', lock, 'sh', '-c', 'echo held; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const [line] = await Promise.race([
    once(holder.stdout, 'data'),
    once(holder, 'exit').then(([code]) => { throw new Error(`flock --shared ${lock} exited with ${String(code)}`) })
  ]) as [Buffer]
  if (!line.toString().startsWith('held')) throw new Error(`flock --shared ${lock}: unexpected ${line.toString()}`)
  holder.stdout.resume()
  return async () => {
    const exited = once(holder, 'exit')
    holder.stdin.end()
    await exited
  }
}

/**
 * A vitest globalSetup for a test service started by a project script (`SCRIPT start`, quick
 * when it is up already). Test runs of several checkouts may share the service at once: each
 * holds its users lock while it runs, and the last one to finish stops the service (`SCRIPT
 * stop`) if a test run started it. One that was up before any test run (started by hand) stays.
 */
export async function serviceSetup (script: string, healthUrl: string): Promise<() => Promise<void>> {
  const lock = usersLock(script)
  const startedByTests = `${lock}.started`
  // Taken before the probe: a stop in progress (it holds the lock exclusively) finishes first.
  const release = await holdShared(lock)
  const wasUp = await answers(healthUrl)
  execFileSync('bash', [script, 'start'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 })
  if (!wasUp) writeFileSync(startedByTests, `${process.pid}\n`)
  return async () => {
    await release()
    try {
      execFileSync('flock', ['--exclusive', '--nonblock', '-E', String(IN_USE), lock, 'sh', '-c', 'test -e "$1" || exit 0; bash "$2" stop && rm -f "$1"', 'sh', startedByTests, script],
        { stdio: ['ignore', 'inherit', 'inherit'], timeout: 120_000 })
    } catch (err) {
      if ((err as { status?: number }).status !== IN_USE) throw err
    }
  }
}
