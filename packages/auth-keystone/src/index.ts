export { KeystoneAuthenticator, type KeystoneAuthInit, type KeystoneAuthComponents } from './keystone-auth.ts'
export { KeystoneSession, type KeystoneCredentials, type KeystoneSessionInit } from './keystone-session.ts'
export { catalogEndpoint, type CatalogEntry } from './catalog.ts'
export { TokenCache } from './token-cache.ts'
