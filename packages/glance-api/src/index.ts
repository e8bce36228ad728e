export { buildGlanceApi } from './app.ts'
export type { GlanceApiComponents, GlanceApiInit } from './app.ts'
export { noAuth } from './auth.ts'
export type { NoAuthInit } from './auth.ts'
