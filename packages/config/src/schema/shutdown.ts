import { Type, type Static } from 'typebox'

export const ShutdownConfig = Type.Object({
  graceMs: Type.Integer({
    minimum: 0,
    default: 10000,
    description: 'Milliseconds that SIGTERM or SIGINT waits for in-flight requests to finish; after that, or on a second signal, the agent exits with status 1.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'Stopping the agent.'
})
export type ShutdownConfig = Static<typeof ShutdownConfig>
