import { randomUUID } from 'node:crypto'
import { ForbiddenError, NotFoundError, ValidationError } from '@peerglance/interface'
import type { Identity, MetadataStore, TaskRecord } from '@peerglance/interface'
import type { GlancePolicy, ServiceRule } from './policy.ts'
import { UUID_PATTERN } from './properties.ts'
import { taskRefusal } from './replication.ts'
import { TASK_SCHEMA } from './schemas.ts'
import { now } from './time.ts'
import { check } from './validate.ts'

/** What runs the tasks `POST /v2/tasks` creates (ImportService). */
export interface TaskRunner {
  /** Refuses, as a 400, what the task could never do (an `import` task's `import_from`). */
  checkTask: (task: Pick<TaskRecord, 'type' | 'input'>) => void
  /** Runs the task in the background, as Glance's task executor does. */
  startTask: (who: Identity, task: TaskRecord) => void
}

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
  readonly #runner: TaskRunner | undefined

  constructor (components: { metadata: MetadataStore, policy: GlancePolicy, runner?: TaskRunner }) {
    this.#metadata = components.metadata
    this.#policy = components.policy
    this.#runner = components.runner
  }

  /**
   * `POST /v2/tasks` (tasks.py create, deprecated since Mitaka but served by Glance 25): the
   * access rule first, then the body as the deserializer checks it, then the task is recorded
   * `pending` and run in the background. Only an `import` task does anything (it creates an
   * image from `image_properties` and fetches `import_from` into it); an `api_image_import`
   * created this way fails, as Glance's does without an image to import to.
   */
  async create (who: Identity, body: unknown, opts: { requestId?: string } = {}): Promise<TaskRecord> {
    this.#enforce('tasks_api_access', who)
    if (body == null || typeof body !== 'object' || Array.isArray(body)) throw new ValidationError('Body expected in request.')
    const request = body as Record<string, unknown>
    for (const key of ['type', 'input']) if (!Object.hasOwn(request, key)) throw new ValidationError(`Task '${key}' is required`)
    check('task', request, TASK_SCHEMA)
    this.#enforce('add_task', who)
    const type = request.type as TaskRecord['type']
    const input = (request.input ?? {}) as Record<string, unknown>
    if (this.#runner == null) throw new ForbiddenError('Tasks cannot be created on this agent.')
    this.#runner.checkTask({ type, input })
    const at = now()
    const task: TaskRecord = {
      id: randomUUID(),
      type,
      status: 'pending',
      owner: who.projectId,
      image_id: imageIdOf(input),
      request_id: opts.requestId ?? null,
      user_id: who.userId,
      input,
      result: null,
      message: '',
      created_at: at,
      updated_at: at,
      expires_at: null
    }
    // Every other agent checks a task with these rules before it keeps one: refused here, not kept here alone.
    const refusal = taskRefusal(task)
    if (refusal != null) throw new ValidationError(`Invalid task: ${refusal}.`)
    await this.#metadata.putTask(task)
    this.#runner.startTask(who, task)
    return task
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
    // Glance 25's deserializer knows only the old task type here (tasks.py _get_filters).
    if (type != null && type !== 'import') throw new ValidationError(`Invalid type value: ${type}`)
    const sortKey = one('sort_key') ?? 'created_at'
    if (!SORT_KEYS.includes(sortKey)) throw new ValidationError('Sort key supplied was not valid.')
    const sortDir = one('sort_dir') ?? 'desc'
    if (sortDir !== 'asc' && sortDir !== 'desc') throw new ValidationError(`Invalid sort direction: ${sortDir}`)
    const limitText = one('limit')
    const limit = limitText == null ? DEFAULT_LIMIT : /^\s*[-+]?\d+\s*$/.test(limitText) ? Number(limitText) : Number.NaN
    if (Number.isNaN(limit)) throw new ValidationError('limit param must be an integer')
    if (limit < 0) throw new ValidationError('limit param must be positive')
    const marker = one('marker')
    if (marker != null && !UUID_PATTERN.test(marker)) throw new ValidationError('Invalid marker format')

    const sign = sortDir === 'asc' ? 1 : -1
    const key = (t: TaskRecord): string => String((t as unknown as Record<string, unknown>)[sortKey] ?? '')
    let tasks = this.#visible(who)
      .filter(t => (status == null || t.status === status) && (type == null || t.type === type))
      .sort((a, b) => sign * (key(a).localeCompare(key(b)) || a.id.localeCompare(b.id)))
    if (marker != null) {
      const at = tasks.findIndex(t => t.id === marker)
      if (at < 0) throw new ValidationError(`Task with the given id ${marker} was not found`)
      tasks = tasks.slice(at + 1)
    }
    const page = tasks.slice(0, Math.min(limit, MAX_LIMIT))
    return page.length === limit && limit > 0 && tasks.length > limit ? { tasks: page, nextMarker: page[page.length - 1].id } : { tasks: page }
  }

  /** The blanket rule of every tasks API call (tasks.py _enforce_access_policy). */
  enforceAccess (who: Identity): void {
    this.#enforce('tasks_api_access', who)
  }

  get (who: Identity, id: string): TaskRecord {
    this.#enforce('tasks_api_access', who)
    this.#enforce('get_task', who)
    const task = this.#visible(who).find(t => t.id === id)
    if (task == null) throw new NotFoundError(`Could not find task ${id}`)
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

/**
 * The image a new task is filed under: the one its input names, or, for an `import` task, the one
 * it will create (the id `image_properties` asks for, else one chosen now).
 */
function imageIdOf (input: Record<string, unknown>): string {
  const props = input.image_properties
  const wanted = [input.image_id, props != null && typeof props === 'object' ? (props as Record<string, unknown>).id : undefined]
  return wanted.find((id): id is string => typeof id === 'string' && UUID_PATTERN.test(id)) ?? randomUUID()
}
