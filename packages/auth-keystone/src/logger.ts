/** The slice of a pino logger the authenticator uses; a pino child fits as is. */
export interface KeystoneLogger {
  info (obj: Record<string, unknown>, msg: string): void
  warn (obj: Record<string, unknown>, msg: string): void
  error (obj: Record<string, unknown>, msg: string): void
}

function noop (): void {}

export const silentLogger: KeystoneLogger = { info: noop, warn: noop, error: noop }
