import { Type, type Static } from 'typebox'
import { LISTEN_PATTERN, isListen } from '../listen.ts'

export const ApiConfig = Type.Object({
  listen: Type.Refine(
    Type.String({
      pattern: LISTEN_PATTERN,
      errorMessage: 'must match HOST:PORT with a port of 0-65535, e.g. 127.0.0.1:9292 or [::1]:9292',
      default: '127.0.0.1:9292',
      description: 'Address the Glance API listens on, as HOST:PORT; put an IPv6 host in brackets ([::1]:9292). The default answers only on loopback. Another address (0.0.0.0, [::]) needs auth.mode keystone, or auth.noauth.allowRemote on a trusted network.'
    }),
    // The pattern reports syntax errors; this only catches bracketed hosts that are not IPv6.
    (value) => !new RegExp(LISTEN_PATTERN).test(value) || isListen(value),
    () => 'has a bracketed host that is not an IPv6 address'
  ),
  publicEndpoint: Type.Union([
    Type.String({ pattern: '^https?://[^\\s/]+(/[^\\s]*)?$' }),
    Type.Null()
  ], {
    errorMessage: 'must be an http(s) URL or null',
    default: null,
    description: 'Base URL that version discovery (GET /) advertises to clients, e.g. https://images.example.net:9292, for when the agent sits behind a proxy or NAT. null means the host the request was addressed to.'
  }),
  tls: Type.Object({
    cert: Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
      default: null,
      description: 'PEM file with the certificate chain the API serves HTTPS with; null serves plain HTTP. Set together with key.'
    }),
    key: Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
      default: null,
      description: 'PEM file with the private key of that certificate.'
    })
  }, {
    additionalProperties: false,
    default: {},
    description: 'HTTPS for the API. Clients then need the CA, e.g. openstack --os-cacert FILE, and nova.conf [glance] cafile.'
  }),
  requestTimeoutMs: Type.Integer({
    minimum: 0,
    default: 0,
    description: 'Milliseconds an HTTP request may take in total before the agent drops it; 0 means no limit. Keep 0 unless a proxy in front enforces its own limit, since uploading or downloading a large image can take many minutes.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'The OpenStack Glance v2 HTTP API that nova, glanceclient and openstackclient talk to.'
})
export type ApiConfig = Static<typeof ApiConfig>
