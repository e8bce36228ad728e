export { KeystoneAuthenticator, type KeystoneAuthInit, type KeystoneAuthComponents } from './keystone-auth.ts'
export { TokenCache } from './token-cache.ts'
