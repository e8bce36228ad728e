export { Agent, createAgent } from './create-agent.ts'
export type { AgentOverrides, AgentParts, AgentStatus } from './create-agent.ts'
export { createLogger } from './logger.ts'
