import { Type, type Static } from 'typebox'

export const AuditConfig = Type.Object({
  file: Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
    default: null,
    description: 'File that gets one JSON line per image action (create, update, upload, download, delete, member change, import, deactivate, reactivate, refusal) with time, request id, user, project, image, outcome, bytes and remote address; never a token. Reopened on SIGHUP, so logrotate can move it. null writes no audit log.'
  })
}, {
  additionalProperties: false,
  default: {},
  description: 'The audit trail of image actions, apart from the operational log.'
})
export type AuditConfig = Static<typeof AuditConfig>
