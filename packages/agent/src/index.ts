export { Agent } from './create-agent.ts'
export type { AgentOverrides, AgentStatus } from './create-agent.ts'
export { createLogger } from './logger.ts'
