export { startAgent, spawnAgent, tmpDir } from './agents.ts'
export type { TestAgent, SpawnedAgent } from './agents.ts'
export { randomFile, sha512File, md5File } from './files.ts'
