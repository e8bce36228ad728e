export { KeystoneAuthenticator, type KeystoneAuthInit, type KeystoneAuthComponents } from './keystone-auth.ts'
export type { KeystoneLogger } from './logger.ts'
export { TokenCache } from './token-cache.ts'
