import { siteStates } from '@peerglance/glance-domain'
import type { SiteDirectory } from '@peerglance/glance-domain'
import type { ImageRecord } from '@peerglance/interface'

/**
 * The mesh's sites as this agent knows them: its own, those other agents announce (a site with no
 * agent heard from for 10 minutes drops out), and those images are placed on, so a store an
 * image lists is never unknown.
 */
export function siteDirectory (own: string, announced: () => Iterable<string>, images: () => Iterable<ImageRecord>): SiteDirectory {
  return {
    own,
    known () {
      const sites = new Set([own, ...announced()])
      for (const image of images()) {
        if (image.status === 'deleted') continue
        for (const [site, state] of siteStates(image)) if (state === 'active') sites.add(site)
      }
      return [...sites].sort()
    }
  }
}
