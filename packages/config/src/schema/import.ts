import { Type, type Static } from 'typebox'

const Strings = (description: string, fallback: string[] = []) => Type.Array(Type.String({ minLength: 1 }), { default: fallback, description })

const Ports = (description: string, fallback: number[] = []) => Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { default: fallback, description })

// Glance's [import_filtering_opts], with its defaults; the address rules are ours and stricter.
export const WebDownloadConfig = Type.Object({
  allowedSchemes: Strings('URI schemes web-download may fetch; empty allows any not disallowed (glance allowed_schemes).', ['http', 'https']),
  disallowedSchemes: Strings('URI schemes web-download refuses; ignored when allowedSchemes is set (glance disallowed_schemes).'),
  allowedHosts: Strings('Host names or addresses web-download may fetch, and only those; a host listed here may resolve to any address, loopback and private included (glance allowed_hosts).'),
  disallowedHosts: Strings('Host names or addresses web-download refuses, also matched against every resolved address; ignored when allowedHosts is set (glance disallowed_hosts).'),
  allowedPorts: Ports('Ports web-download may connect to; empty allows any not disallowed (glance allowed_ports).', [80, 443]),
  disallowedPorts: Ports('Ports web-download refuses; ignored when allowedPorts is set (glance disallowed_ports).'),
  allowedNetworks: Type.Array(Type.String({ pattern: '^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$' }), { default: [], description: 'Address ranges (CIDR, e.g. 10.20.0.0/16) web-download may connect to although they are loopback, link-local, private or otherwise not public; by default only public addresses are fetched from, whatever a name resolves to, after every redirect.' }),
  maxRedirects: Type.Integer({ minimum: 0, maximum: 20, default: 5, description: 'Redirects web-download follows, each checked against every rule above as the first URI was.' }),
  timeoutMs: Type.Integer({ minimum: 1000, default: 60_000, description: 'A web-download that receives nothing for this long fails.' })
}, { additionalProperties: false, default: {}, description: 'What the web-download import may fetch from (glance [import_filtering_opts]).' })

export const GlanceDownloadConfig = Type.Object({
  serviceType: Type.String({ minLength: 1, default: 'image', description: 'Catalog service type of the other regions\' Glance that glance-download reads from (found in the caller\'s Keystone catalog by region and interface, and asked with the caller\'s token; needs auth.mode keystone).' }),
  extraProperties: Strings('Property name prefixes glance-download copies from the source image, besides its disk and container formats (glance [glance_download_properties] extra_properties).', ['hw_', 'trait:', 'os_distro', 'os_secure_boot', 'os_type'])
}, { additionalProperties: false, default: {}, description: 'The glance-download import method (enable it in glance.enabledImportMethods).' })

export const ImportConfig = Type.Object({
  webDownload: WebDownloadConfig,
  glanceDownload: GlanceDownloadConfig,
  conversionFormat: Type.Union([Type.Null(), Type.String({ minLength: 1 })], {
    default: null,
    description: 'Convert imported images to this disk format with qemu-img (e.g. raw), then inspect the result, as Glance\'s image_conversion plugin ([image_conversion] output_format); null converts nothing.'
  }),
  defaultStores: Type.Union([Type.Literal('own'), Type.Literal('all')], {
    default: 'own',
    description: 'Where an import that names no stores goes: own (the site of the agent that takes the request, as Glance\'s default_backend) or all (every site the mesh knows: publish everywhere).'
  }),
  siteTimeoutMs: Type.Integer({
    minimum: 1000,
    default: 600_000,
    description: 'How long an import or copy-image waits for each target site to report a complete copy before it lists the site in os_glance_failed_import.'
  })
}, { additionalProperties: false, default: {}, description: 'Image import: web-download filters, conversion, placement on sites (glance-api.conf [import_filtering_opts], [image_conversion]).' })
export type ImportConfig = Static<typeof ImportConfig>
