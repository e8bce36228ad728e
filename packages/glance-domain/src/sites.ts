import type { ImageRecord } from '@peerglance/interface'

/**
 * Stores are sites. Where an image is placed is kept on the image itself, one hidden property per
 * site (`os_glance_site:<site>`), so that agents of different sites reporting their copy at the
 * same time change different fields, which replication merges, instead of overwriting one list.
 * The `stores`, `os_glance_importing_to_stores` and `os_glance_failed_import` Glance shows are
 * derived from them (`storeFields`).
 */
export const SITE_PROPERTY_PREFIX = 'os_glance_site:'

/**
 * `importing`: the site's agents are to fetch the image; `active`: one of them holds it whole;
 * `failed`: the site did not report a copy in time.
 */
export const SITE_STATES = ['importing', 'active', 'failed'] as const
export type SiteState = typeof SITE_STATES[number]

/** Same as the config's `agent.site` pattern: a site name is a Glance store id. */
export const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/

/** Most sites one image may name: bounds what a peer's record can make every agent store. */
export const MAX_SITES_PER_IMAGE = 256

export function siteStates (image: Pick<ImageRecord, 'properties'>): Map<string, SiteState> {
  const states = new Map<string, SiteState>()
  for (const [key, value] of Object.entries(image.properties)) {
    if (key.startsWith(SITE_PROPERTY_PREFIX)) states.set(key.slice(SITE_PROPERTY_PREFIX.length), value as SiteState)
  }
  return states
}

export function siteState (image: Pick<ImageRecord, 'properties'>, site: string): SiteState | undefined {
  const value = image.properties[SITE_PROPERTY_PREFIX + site]
  return value == null ? undefined : value as SiteState
}

/** The image with `site` in `state`, or without it (undefined). */
export function withSite<T extends Pick<ImageRecord, 'properties'>> (image: T, site: string, state: SiteState | undefined): T {
  const key = SITE_PROPERTY_PREFIX + site
  if (state != null) return { ...image, properties: { ...image.properties, [key]: state } }
  const { [key]: _, ...properties } = image.properties
  return { ...image, properties }
}

/** The image with every site-state property removed (an image back to `queued` holds no copy anywhere). */
export function withoutSites<T extends Pick<ImageRecord, 'properties'>> (image: T): T {
  const properties = Object.fromEntries(Object.entries(image.properties).filter(([key]) => !key.startsWith(SITE_PROPERTY_PREFIX)))
  return { ...image, properties }
}

/**
 * What Glance's multi-store API shows of an image's placement: sites holding it, sites still
 * fetching it, sites that failed, each sorted and comma-separated. Nothing for an image never
 * placed (created before sites existed, or without data).
 */
export function storeFields (image: Pick<ImageRecord, 'properties'>): Record<string, string> {
  const states = siteStates(image)
  if (states.size === 0) return {}
  const list = (state: SiteState): string => [...states].filter(([, s]) => s === state).map(([site]) => site).sort().join(',')
  return { stores: list('active'), os_glance_importing_to_stores: list('importing'), os_glance_failed_import: list('failed') }
}

/** Why a peer's site property is not one this agent would write, or undefined. */
export function sitePropertyRefusal (key: string, value: unknown): string | undefined {
  const site = key.slice(SITE_PROPERTY_PREFIX.length)
  if (!SITE_NAME.test(site)) return `site ${site.slice(0, 40)} is not a site name`
  if (value !== null && !(SITE_STATES as readonly unknown[]).includes(value)) return `site ${site} state ${String(value).slice(0, 20)} is not one of ${SITE_STATES.join(', ')}`
  return undefined
}

/** The sites of the mesh, as this agent knows them. */
export interface SiteDirectory {
  /** This agent's site. */
  readonly own: string
  /** Every site known: this one, those agents announce, those images are placed on; sorted. */
  known (): string[]
}
