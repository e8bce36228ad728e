import { Type, type Static } from 'typebox'

/** A site name: what `/v2/info/stores` lists and `stores` names, so it must be a Glance store id. */
export const SITE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'

export const SiteConfig = Type.Object({
  site: Type.String({
    pattern: SITE_PATTERN,
    default: 'default',
    description: 'The site (edge location, rack, region) this agent belongs to. Each site is one Glance store: GET /v2/info/stores lists the sites the mesh\'s agents announce, an image\'s `stores` the sites that hold it, and an import or copy-image to a site makes that site\'s agents fetch the image.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'Who this agent is in the mesh.'
})
export type SiteConfig = Static<typeof SiteConfig>
