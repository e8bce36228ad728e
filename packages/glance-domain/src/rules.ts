/** The operator's Glance settings the domain enforces (glance-api.conf names, glance-api.md §20). */
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

export const DEFAULT_RULES: GlanceRules = {
  limitParamDefault: 25,
  apiLimitMax: 1000,
  imagePropertyQuota: 128,
  imageTagQuota: 128,
  imageMemberQuota: 128,
  imageSizeCap: 1024 ** 4,
  userStorageQuota: 0,
  diskFormats: ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'],
  containerFormats: ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'],
  enabledImportMethods: ['glance-direct'],
  requireImageFormatMatch: true
}
