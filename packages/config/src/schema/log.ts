import { Type, type Static } from 'typebox'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export const LogConfig = Type.Object({
  level: Type.Enum(LOG_LEVELS, {
    default: 'info',
    description: 'Least severe log level written (pino levels); silent turns logging off.'
  }),
  pretty: Type.Enum(['auto', 'always', 'never'], {
    default: 'auto',
    description: 'Whether logs are human-readable text instead of JSON lines. auto: pretty when stdout is a terminal, JSON when it goes to a file or journald.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'Logging to stdout.'
})
export type LogConfig = Static<typeof LogConfig>
