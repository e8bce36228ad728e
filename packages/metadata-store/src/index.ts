export { LevelMetadataStore } from './level-metadata-store.ts'
export type { LevelMetadataStoreInit } from './level-metadata-store.ts'
