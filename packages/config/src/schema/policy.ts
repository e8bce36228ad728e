import { Type, type Static } from 'typebox'

// Glance's [oslo_policy] options. The default rules themselves live with the domain
// (packages/glance-domain/src/policy.ts): this only chooses between them and overrides them.
export const PolicyConfig = Type.Object({
  enforceNewDefaults: Type.Boolean({
    default: true,
    description: 'Use Glance\'s secure-RBAC default rules (reader, member and admin roles per project). false selects the legacy defaults, where most actions need only to own the image (glance [oslo_policy] enforce_new_defaults with [DEFAULT] enforce_secure_rbac).'
  }),
  enforceScope: Type.Boolean({
    default: false,
    description: 'Refuse tokens that are not project-scoped (a system-scoped admin token, say) on every image, member, task, cache and metadata definition rule, as Glance does with [oslo_policy] enforce_scope (off in Glance 25). The agent\'s own /peerglance/ routes ask only whether the caller is an admin, which scope does not change.'
  }),
  file: Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
    default: null,
    description: 'An oslo.policy file (YAML or JSON) mapping rule names to check strings, e.g. "modify_image": "role:admin or project_id:%(project_id)s"; rules it names replace the defaults, the others stay. Read when the agent starts (glance [oslo_policy] policy_file).'
  }),
  rules: Type.Record(Type.String({ minLength: 1 }), Type.String(), {
    default: {},
    description: 'Rule overrides written here instead of in a file, in the same syntax; they win over the file.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'Who may do what to which image: Glance\'s access rules and the operator\'s overrides of them.'
})
export type PolicyConfig = Static<typeof PolicyConfig>
