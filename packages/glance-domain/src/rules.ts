/**
 * The operator's Glance settings the domain enforces (glance-api.conf names, glance-api.md §20).
 * Their defaults live in one place, the agent's config schema (packages/config/src/schema/glance.ts).
 */
export interface GlanceRules {
  limitParamDefault: number
  apiLimitMax: number
  /** Negative means unlimited, as in Glance. */
  imagePropertyQuota: number
  imageTagQuota: number
  imageMemberQuota: number
  imageSizeCap: number
  /** Bytes per owner; 0 means unlimited. */
  userStorageQuota: number
  diskFormats: readonly string[]
  containerFormats: readonly string[]
  enabledImportMethods: readonly string[]
  requireImageFormatMatch: boolean
}
