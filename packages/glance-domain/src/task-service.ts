import { ForbiddenError, NotFoundError, ValidationError } from '@peerglance/interface'
import type { Identity, MetadataStore, TaskRecord } from '@peerglance/interface'
import type { GlancePolicy, ServiceRule } from './policy.ts'
import { UUID_PATTERN } from './properties.ts'

const STATUSES = ['pending', 'processing', 'success', 'failure']
const SORT_KEYS = ['created_at', 'updated_at', 'id', 'type', 'status', 'expires_at', 'owner']
const DEFAULT_LIMIT = 25
const MAX_LIMIT = 1000

export interface TaskPage { tasks: TaskRecord[], nextMarker?: string }

/**
 * The tasks API (`/v2/tasks`, glance/api/v2/tasks.py): the import tasks of every agent, as
 * replicated. Admins only by default (`tasks_api_access`); an admin sees every project's tasks,
 * anyone else the tasks of their own project, as Glance's task repository filters them.
 */
export class TaskService {
  readonly #metadata: MetadataStore
  readonly #policy: GlancePolicy

  constructor (components: { metadata: MetadataStore, policy: GlancePolicy }) {
    this.#metadata = components.metadata
    this.#policy = components.policy
  }

  list (who: Identity, query: Record<string, unknown>): TaskPage {
    this.#enforce('tasks_api_access', who)
    this.#enforce('get_tasks', who)
    const one = (name: string): string | undefined => {
      const v = query[name]
      return Array.isArray(v) ? String(v[0]) : v == null ? undefined : String(v)
    }
    const status = one('status')
    if (status != null && !STATUSES.includes(status)) throw new ValidationError(`Invalid status value: ${status}`)
    const type = one('type')
    if (type != null && type !== 'import' && type !== 'api_image_import' && type !== 'location_import') throw new ValidationError(`Invalid type value: ${type}`)
    const sortKey = one('sort_key') ?? 'created_at'
    if (!SORT_KEYS.includes(sortKey)) throw new ValidationError(`Invalid sort_key value: ${sortKey}`)
    const sortDir = one('sort_dir') ?? 'desc'
    if (sortDir !== 'asc' && sortDir !== 'desc') throw new ValidationError(`Invalid sort direction: ${sortDir}`)
    const limitText = one('limit')
    const limit = limitText == null ? DEFAULT_LIMIT : Number(limitText)
    if (!Number.isInteger(limit) || limit < 0) throw new ValidationError('limit param must be positive')
    const marker = one('marker')
    if (marker != null && !UUID_PATTERN.test(marker)) throw new ValidationError('Invalid marker format')

    const sign = sortDir === 'asc' ? 1 : -1
    const key = (t: TaskRecord): string => String((t as unknown as Record<string, unknown>)[sortKey] ?? '')
    let tasks = this.#visible(who)
      .filter(t => (status == null || t.status === status) && (type == null || t.type === type))
      .sort((a, b) => sign * (key(a).localeCompare(key(b)) || a.id.localeCompare(b.id)))
    if (marker != null) {
      const at = tasks.findIndex(t => t.id === marker)
      if (at < 0) throw new NotFoundError(`Task with identifier ${marker} not found`)
      tasks = tasks.slice(at + 1)
    }
    const page = tasks.slice(0, Math.min(limit, MAX_LIMIT))
    return page.length === limit && limit > 0 && tasks.length > limit ? { tasks: page, nextMarker: page[page.length - 1].id } : { tasks: page }
  }

  get (who: Identity, id: string): TaskRecord {
    this.#enforce('tasks_api_access', who)
    this.#enforce('get_task', who)
    const task = this.#visible(who).find(t => t.id === id)
    if (task == null) throw new NotFoundError(`Task with identifier ${id} not found`)
    return task
  }

  #visible (who: Identity): TaskRecord[] {
    const now = Date.now()
    const all = [...this.#metadata.tasks()].filter(t => t.expires_at == null || Date.parse(t.expires_at) > now)
    return this.#policy.isAdmin(who) ? all : all.filter(t => who.projectId != null && t.owner === who.projectId)
  }

  #enforce (rule: ServiceRule, who: Identity): void {
    if (!this.#policy.allows(rule, who, { project_id: who.projectId ?? null })) throw new ForbiddenError(`You are not authorized to complete ${rule} action.`)
  }
}
