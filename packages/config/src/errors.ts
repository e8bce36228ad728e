/** One bad option: `path` is dotted (`api.listen`, `glance.diskFormats[2]`), or a flag name for CLI input. */
export interface ConfigIssue {
  path: string
  message: string
}

/**
 * Anything wrong with the agent's configuration: a bad option value, an unknown key, an
 * unreadable or unparsable file, a bad command-line flag. The message is written for the
 * operator and names every offending option, so bin.ts can print it and exit.
 * Callers match on `err.name` (it survives duplicated package copies where instanceof does not).
 */
export class ConfigError extends Error {
  static readonly errorName = 'ConfigError'
  /** Every problem found, for callers that want to render them their own way. */
  readonly issues: readonly ConfigIssue[]
  /** The config file involved, when there was one. */
  readonly file: string | undefined

  constructor (message: string, init: { issues?: readonly ConfigIssue[], file?: string, cause?: unknown } = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause })
    this.name = ConfigError.errorName
    this.issues = init.issues ?? []
    this.file = init.file
  }
}
