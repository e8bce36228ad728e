import { pino } from 'pino'
import type { Logger } from 'pino'
import type { AgentConfig } from '@peerglance/config'

/**
 * The root logger: JSON lines on stdout, pretty (in a worker thread, off the hot path) when
 * stdout is a terminal. Tokens never reach the log.
 */
export function createLogger (config: AgentConfig['log'], destination?: NodeJS.WritableStream): Logger {
  const pretty = config.pretty === 'always' || (config.pretty === 'auto' && process.stdout.isTTY && destination == null)
  const options = {
    level: config.level,
    base: { pid: process.pid },
    redact: [
      'req.headers["x-auth-token"]', 'req.headers["x-service-token"]', 'req.headers["x-subject-token"]',
      'headers["x-auth-token"]', 'headers["x-service-token"]', 'headers["x-subject-token"]',
      'password', '*.password', 'auth.keystone.password', 'config.auth.keystone.password'
    ]
  }
  if (pretty) return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } })
  return destination == null ? pino(options) : pino(options, destination)
}
