/** Glance's image statuses (glance/domain/__init__.py). */
export const IMAGE_STATUSES = ['queued', 'saving', 'active', 'killed', 'deleted', 'uploading', 'importing', 'pending_delete', 'deactivated'] as const
export type ImageStatus = typeof IMAGE_STATUSES[number]

export const VISIBILITIES = ['community', 'public', 'private', 'shared'] as const
export type Visibility = typeof VISIBILITIES[number]

export const MEMBER_STATUSES = ['pending', 'accepted', 'rejected'] as const
export type MemberStatus = typeof MEMBER_STATUSES[number]

/**
 * One image as the domain keeps it. Field names are Glance's, so views, filters and sort keys use
 * them unchanged; `properties` holds the extra (non-base) properties, always strings.
 */
export interface ImageRecord {
  id: string
  name: string | null
  status: ImageStatus
  visibility: Visibility
  protected: boolean
  os_hidden: boolean
  owner: string | null
  checksum: string | null
  os_hash_algo: string | null
  os_hash_value: string | null
  size: number | null
  virtual_size: number | null
  container_format: string | null
  disk_format: string | null
  min_ram: number
  min_disk: number
  tags: string[]
  /** `YYYY-MM-DDTHH:MM:SSZ`, as Glance renders them; second resolution, ties broken by id. */
  created_at: string
  updated_at: string
  properties: Record<string, string | null>
}

export interface MemberRecord {
  image_id: string
  member_id: string
  status: MemberStatus
  created_at: string
  updated_at: string
}

/**
 * Where an image's bytes are: fixed-size chunks named by CID, in order. Every chunk but the last
 * holds exactly `chunkSize` bytes, so sizes and offsets follow from `size` and need not be stored.
 */
export interface Manifest {
  size: number
  chunkSize: number
  cids: string[]
  md5: string
  sha512: string
  /** Data written by `PUT /stage`, not yet imported: kept, but not served. */
  staged: boolean
}

/** Result of running an import (`api_image_import`), shown by `GET /v2/images/{id}/tasks`. */
export interface TaskRecord {
  id: string
  /** `import` only for the tasks API's own (deprecated) import task, `POST /v2/tasks`. */
  type: 'api_image_import' | 'import'
  status: 'pending' | 'processing' | 'success' | 'failure'
  owner: string | null
  /** The image the task works on (an `import` task: the one it creates). */
  image_id: string
  request_id: string | null
  user_id: string | null
  input: Record<string, unknown>
  result: Record<string, unknown> | null
  message: string
  created_at: string
  updated_at: string
  expires_at: string | null
}
