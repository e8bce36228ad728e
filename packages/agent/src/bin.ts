import { AGENT_USAGE, ConfigError, loadConfig, parseAgentArgs } from '@peerglance/config'
import { PolicySyntaxError } from '@peerglance/glance-domain'
import type { AgentConfig } from '@peerglance/config'
import type { Logger } from 'pino'
import type { Agent } from './create-agent.ts'
import { CommandError } from './cli/io.ts'
import { collectWhenIdle } from './idle-collector.ts'
import type { CommandIo } from './cli/io.ts'
import { evictCommand, pinCommand, prefetchCommand } from './cli/cache-commands.ts'
import { credentialCommand } from './cli/credential.ts'
import { metadefsCommand } from './cli/metadefs.ts'
import { seedCommand } from './cli/seed.ts'
import { statusCommand } from './cli/status.ts'

const USAGE = `Usage: peerglance COMMAND [options]

Commands:
  agent     run the agent (the Glance API and the mesh) on this host
  seed      upload an image file through the local agent, with progress
  status    show the local agent's peers and images
  prefetch  have the local agent fetch an image now, with progress
  pin       keep an image on the local agent whatever its cache needs
  unpin     undo pin
  evict     drop an image from the local agent's cache
  credential  sign a mesh membership credential for an agent with the operator's key
  metadefs  load Glance's metadata definition files into the mesh (metadefs load DIR)

peerglance COMMAND --help tells more.`

/** Operator commands: clients of an agent's API, each returning its exit code. */
const COMMANDS: Record<string, (argv: string[], io: CommandIo) => Promise<number>> = {
  seed: seedCommand,
  status: statusCommand,
  prefetch: prefetchCommand,
  pin: pinCommand(true),
  unpin: pinCommand(false),
  evict: evictCommand,
  credential: credentialCommand,
  metadefs: metadefsCommand
}

async function operatorCommand (command: (argv: string[], io: CommandIo) => Promise<number>, argv: string[]): Promise<number> {
  try {
    return await command(argv, { stdout: process.stdout, stderr: process.stderr, env: process.env })
  } catch (err) {
    if (!(err instanceof CommandError)) throw err
    process.stderr.write(`peerglance: ${err.message}\n`)
    return err.exitCode
  }
}

/** `peerglance COMMAND [flags]`: the only code that touches process, signals and exit codes. */
async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === '--help' || command === '-h' || command == null) {
    (command == null ? process.stderr : process.stdout).write(`${USAGE}\n`)
    return command == null ? 2 : 0
  }
  const operator = COMMANDS[command]
  if (operator != null) return await operatorCommand(operator, rest)
  if (command !== 'agent') {
    process.stderr.write(`peerglance: unknown command '${command}' (try: peerglance --help)\n`)
    return 2
  }
  let config: AgentConfig
  let log: Logger | undefined
  let agent: Agent
  try {
    const args = parseAgentArgs(rest)
    if (args.help) {
      process.stdout.write(`${AGENT_USAGE}\n`)
      return 0
    }
    config = loadConfig({ file: args.configFile, overrides: args.overrides })
    // Loaded here, not at the top: the operator commands need none of libp2p, LevelDB or fastify.
    const [{ createAgent }, { createLogger }] = await Promise.all([import('./create-agent.ts'), import('./logger.ts')])
    log = createLogger(config.log)
    agent = await createAgent(config, { logger: log })
  } catch (err) {
    // A policy rule that does not parse is as much a configuration mistake as a bad option.
    if ((err as Error).name === ConfigError.name || (err as Error).name === PolicySyntaxError.name) {
      process.stderr.write(`peerglance: ${(err as Error).message}\n`)
      return 2
    }
    if (log == null) throw err
    log.fatal({ err }, 'agent failed to start')
    return 1
  }

  let stopping = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      agent.log.warn({ signal }, 'second signal, exiting now')
      process.exit(1)
    }
    stopping = true
    agent.log.info({ signal }, 'stopping')
    const deadline = setTimeout(() => {
      agent.log.error('shutdown deadline passed, exiting')
      process.exit(1)
    }, agent.config.shutdown.graceMs + 5000)
    deadline.unref()
    agent.stop().then(() => process.exit(0), (err: unknown) => {
      agent.log.error({ err }, 'stop failed')
      process.exit(1)
    })
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  process.on('SIGHUP', () => {
    agent.log.info('SIGHUP: reopening the audit log')
    agent.reopenLogs()
  })
  stopWithLauncher(() => { onSignal('SIGHUP') })
  // A promise some peer interaction forgot to handle is a bug to fix, not a reason to cut every
  // Nova download this agent is serving: log it loudly and keep going.
  process.on('unhandledRejection', err => { agent.log.error({ err }, 'unhandled promise rejection') })

  try {
    await agent.start()
  } catch (err) {
    agent.log.fatal({ err }, 'agent failed to start')
    return 1
  }
  collectWhenIdle(c => { agent.log.debug(c, 'idle: collected the heap') })
  return -1
}

/**
 * `npx peerglance` (and any npm script without `exec`) runs us under `sh -c`, which does not pass
 * SIGTERM on: npm and the shell exit and leave the agent holding its port. When npm started us and
 * our parent goes, stop as if signalled. Not for other launchers: `nohup peerglance agent &` must
 * outlive its shell, and systemd is PID 1 from the start.
 */
function stopWithLauncher (stop: () => void): void {
  if (process.env.npm_command == null) return
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid === parent) return
    clearInterval(timer)
    stop()
  }, 500)
  timer.unref()
}

const code = await main(process.argv.slice(2))
if (code >= 0) process.exit(code)
