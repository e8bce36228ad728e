import { describe, expect, it } from 'vitest'
import { uriRefusal } from '../src/uri-filter.ts'
import type { UriFilter } from '../src/uri-filter.ts'

const GLANCE_DEFAULTS: UriFilter = { allowedSchemes: ['http', 'https'], disallowedSchemes: [], allowedHosts: [], disallowedHosts: [], allowedPorts: [80, 443], disallowedPorts: [] }

describe('uriRefusal (Glance import_filtering_opts)', () => {
  it('accepts http and https on their usual ports, refuses other schemes and ports', () => {
    expect(uriRefusal('http://images.example.net/cirros.img', GLANCE_DEFAULTS)).toBeUndefined()
    expect(uriRefusal('https://images.example.net:443/cirros.img', GLANCE_DEFAULTS)).toBeUndefined()
    expect(uriRefusal('ftp://images.example.net/cirros.img', GLANCE_DEFAULTS)).toMatch(/scheme not allowed/)
    expect(uriRefusal('file:///etc/passwd', GLANCE_DEFAULTS)).toMatch(/scheme not allowed/)
    expect(uriRefusal('http://images.example.net:8080/x', GLANCE_DEFAULTS)).toMatch(/port not allowed/)
    expect(uriRefusal('not a uri', GLANCE_DEFAULTS)).toMatch(/not a valid URI/)
  })

  it('lets the allowed list win over the disallowed one, as Glance does', () => {
    const filter = { ...GLANCE_DEFAULTS, allowedHosts: ['Mirror.Example.NET.'], disallowedHosts: ['mirror.example.net'] }
    expect(uriRefusal('http://mirror.example.net/x', filter)).toBeUndefined()
    expect(uriRefusal('http://other.example.net/x', filter)).toMatch(/host not allowed/)
    expect(uriRefusal('http://[::1]/x', { ...GLANCE_DEFAULTS, disallowedHosts: ['::1'] })).toMatch(/host not allowed/)
    expect(uriRefusal('http://x.example.net:8080/x', { ...GLANCE_DEFAULTS, allowedPorts: [], disallowedPorts: [8080] })).toMatch(/port not allowed/)
    expect(uriRefusal('gopher://x.example.net/x', { ...GLANCE_DEFAULTS, allowedSchemes: [], disallowedSchemes: ['gopher'] })).toMatch(/scheme not allowed/)
  })

  it('refuses credentials in the URI (they would be sent to whatever host it names)', () => {
    expect(uriRefusal('http://user:secret@images.example.net/x', GLANCE_DEFAULTS)).toMatch(/credentials/)
  })
})
