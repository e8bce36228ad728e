/** The slice of a pino logger the store uses; a pino child fits as is. */
export interface ChunkStoreLogger {
  debug (obj: Record<string, unknown>, msg: string): void
  info (obj: Record<string, unknown>, msg: string): void
  warn (obj: Record<string, unknown>, msg: string): void
}

function noop (): void {}

export const silentLogger: ChunkStoreLogger = { debug: noop, info: noop, warn: noop }
