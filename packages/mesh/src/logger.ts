import { format } from 'node:util'
import type { ComponentLogger, Logger as Libp2pLogger } from '@libp2p/interface'
import type { Logger } from '@peerglance/interface'

/** The interface's Logger, plus what the libp2p adapter needs: children and a level check. */
export interface PinoLike extends Logger {
  child: (bindings: Record<string, unknown>) => PinoLike
  isLevelEnabled?: (level: string) => boolean
}

/**
 * libp2p-style loggers (`log('fetch of %s failed - %e', cid, err)`) that write to pino: plain
 * calls at debug, `.error` at warn (the error under `err`), `.trace` nowhere. Used for the mesh's
 * own components; libp2p's internals keep libp2p's logger, which is far chattier.
 */
export function pinoComponentLogger (root: PinoLike): ComponentLogger {
  return {
    forComponent (name: string): Libp2pLogger {
      return makeLogger(root.child({ component: name }))
    }
  }
}

function makeLogger (log: PinoLike): Libp2pLogger {
  const debugEnabled = (): boolean => log.isLevelEnabled?.('debug') ?? true
  const render = (formatter: unknown, args: unknown[]): { msg: string, err?: unknown } => {
    let err: unknown
    const converted = args.map(arg => {
      if (arg instanceof Error) {
        err ??= arg
        return arg.message
      }
      return typeof arg === 'object' && arg != null && 'toString' in arg ? String(arg) : arg
    })
    const text = String(formatter).replace(/%[pcaet]/g, '%s')
    return { msg: format(text, ...converted), err }
  }
  const logger = ((formatter: unknown, ...args: unknown[]) => {
    if (!debugEnabled()) return
    const { msg, err } = render(formatter, args)
    log.debug(err == null ? {} : { err }, msg)
  }) as Libp2pLogger
  logger.error = (formatter: unknown, ...args: unknown[]) => {
    const { msg, err } = render(formatter, args)
    log.warn(err == null ? {} : { err }, msg)
  }
  logger.trace = () => {}
  logger.enabled = true
  logger.newScope = (name: string) => makeLogger(log.child({ scope: name }))
  return logger
}
