import { Type, type Static } from 'typebox'

export const DataDirConfig = Type.String({
  minLength: 1,
  default: './data',
  description: 'Directory that holds this agent\'s image chunks and its LevelDB metadata. A relative path is resolved against the agent\'s working directory. Put it on a disk with room for every image the hypervisor may boot.'
})
export type DataDirConfig = Static<typeof DataDirConfig>
