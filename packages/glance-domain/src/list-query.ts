import { ValidationError, VISIBILITIES } from '@peerglance/interface'
import type { ImageRecord, MemberStatus } from '@peerglance/interface'

export type Query = Record<string, string | string[] | undefined>

export const SORT_KEYS = ['name', 'status', 'container_format', 'disk_format', 'size', 'id', 'created_at', 'updated_at'] as const
type SortKey = typeof SORT_KEYS[number]
export interface SortSpec { key: SortKey, dir: 'asc' | 'desc' }

type Predicate = (image: ImageRecord) => boolean

/** A parsed `GET /v2/images` query (glance/api/v2/images.py RequestDeserializer.index). */
export interface ListQuery {
  limit: number
  marker?: string
  sort: SortSpec[]
  visibility?: 'public' | 'private' | 'shared' | 'community' | 'all'
  memberStatus: MemberStatus | 'all'
  osHidden: boolean
  filters: Predicate[]
}

const PAGING_KEYS = new Set(['limit', 'marker', 'sort_key', 'sort_dir', 'sort'])
const IN_FILTER_KEYS = new Set(['name', 'id', 'status', 'container_format', 'disk_format'])
const TIME_OPS: Record<string, (a: number, b: number) => boolean> = {
  eq: (a, b) => a === b, neq: (a, b) => a !== b, gt: (a, b) => a > b, gte: (a, b) => a >= b, lt: (a, b) => a < b, lte: (a, b) => a <= b
}

export function parseListQuery (query: Query, limits: { limitParamDefault: number, apiLimitMax: number }): ListQuery {
  const one = (key: string): string | undefined => {
    const v = query[key]
    return Array.isArray(v) ? v[v.length - 1] : v
  }
  const all = (key: string): string[] => [query[key] ?? []].flat()

  const parsed: ListQuery = {
    limit: parseLimit(one('limit'), limits),
    sort: parseSort(query),
    memberStatus: 'accepted',
    osHidden: false,
    filters: []
  }
  const marker = one('marker')
  if (marker != null) parsed.marker = marker

  for (const key of Object.keys(query)) {
    if (PAGING_KEYS.has(key)) continue
    const value = one(key) as string
    switch (key) {
      case 'changes-since':
        throw new ValidationError('The changes-since filter is no longer available on v2.')
      case 'visibility':
        if (![...VISIBILITIES, 'all'].includes(value)) throw new ValidationError(`Invalid visibility value: ${value}`)
        parsed.visibility = value as ListQuery['visibility']
        break
      case 'member_status':
        if (!['pending', 'accepted', 'rejected', 'all'].includes(value)) throw new ValidationError(`Invalid status value: ${value}`)
        parsed.memberStatus = value as ListQuery['memberStatus']
        break
      case 'os_hidden':
        // Glance lowercases this one (not `protected`): openstacksdk's find_image sends os_hidden=True.
        parsed.osHidden = parseBool(key, value.toLowerCase())
        break
      case 'protected': {
        const want = parseBool(key, value)
        parsed.filters.push(i => i.protected === want)
        break
      }
      case 'tag': {
        const tags = all('tag')
        parsed.filters.push(i => tags.every(t => i.tags.includes(t)))
        break
      }
      case 'size_min':
      case 'size_max': {
        const bound = Number(value)
        if (value.trim() === '' || !Number.isFinite(bound)) throw new ValidationError(`Invalid value for ${key}: ${value}`)
        parsed.filters.push(key === 'size_min' ? i => i.size != null && i.size >= bound : i => i.size != null && i.size <= bound)
        break
      }
      case 'created_at':
      case 'updated_at':
        parsed.filters.push(timeFilter(key, value))
        break
      default:
        parsed.filters.push(IN_FILTER_KEYS.has(key) ? inFilter(key as keyof ImageRecord, value) : propertyFilter(key, value))
    }
  }
  return parsed
}

function parseLimit (raw: string | undefined, limits: { limitParamDefault: number, apiLimitMax: number }): number {
  if (raw == null) return Math.min(limits.limitParamDefault, limits.apiLimitMax)
  const n = Number(raw)
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(n)) {
    throw new ValidationError(/^\s*-\d+\s*$/.test(raw) ? 'limit param must be positive' : 'limit param must be an integer')
  }
  return Math.min(n, limits.apiLimitMax)
}

function parseBool (key: string, value: string): boolean {
  if (value === 'true') return true
  if (value === 'false') return false
  throw new ValidationError(`Invalid value for ${key}: ${value}. It must be 'true' or 'false'.`)
}

/** `sort_key`/`sort_dir` (repeatable) or `sort=k1:dir,k2`, never both; created_at and id break ties. */
function parseSort (query: Query): SortSpec[] {
  const keys = [query.sort_key ?? []].flat()
  const dirs = [query.sort_dir ?? []].flat()
  const sort = [query.sort ?? []].flat()
  let specs: SortSpec[]
  if (sort.length > 0) {
    if (keys.length > 0 || dirs.length > 0) throw new ValidationError('Old and new sorting syntax cannot be combined')
    specs = sort.join(',').split(',').map(part => {
      const [key, dir = 'desc', ...rest] = part.trim().split(':').map(s => s.trim())
      if (rest.length > 0) throw new ValidationError(`Invalid sort value: ${part}`)
      return { key: checkSortKey(key), dir: checkSortDir(dir) }
    })
  } else {
    if (dirs.length > 1 && dirs.length !== keys.length) throw new ValidationError('Number of sort dirs does not match the number of sort keys')
    const checkedDirs = dirs.map(checkSortDir)
    specs = keys.map((key, i) => ({ key: checkSortKey(key), dir: checkedDirs[dirs.length > 1 ? i : 0] ?? 'desc' }))
  }
  if (specs.length === 0) specs.push({ key: 'created_at', dir: 'desc' })
  const lastDir = specs[specs.length - 1].dir
  for (const key of ['created_at', 'id'] as const) {
    if (!specs.some(s => s.key === key)) specs.push({ key, dir: lastDir })
  }
  return specs
}

function checkSortKey (key: string): SortKey {
  if (!(SORT_KEYS as readonly string[]).includes(key)) throw new ValidationError(`Invalid sort key: ${key}. It must be one of the following: ${SORT_KEYS.join(', ')}.`)
  return key as SortKey
}

function checkSortDir (dir: string): 'asc' | 'desc' {
  if (dir !== 'asc' && dir !== 'desc') throw new ValidationError(`Invalid sort direction: ${dir}`)
  return dir
}

/** `in:a,b,"c,d"` or an exact value (glance/common/utils.py split_filter_op / split_filter_value_for_quotes). */
function inFilter (key: keyof ImageRecord, raw: string): Predicate {
  let values = [raw]
  if (raw.startsWith('in:')) {
    values = splitQuoted(raw.slice(3))
  } else if (/^[a-z]+:/.test(raw) && key !== 'name' && key !== 'id') {
    throw new ValidationError(`Unable to filter on a unknown operator '${raw.split(':')[0]}'.`)
  }
  return i => values.includes(String(i[key]))
}

function splitQuoted (list: string): string[] {
  const out: string[] = []
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|([^,]*))\s*(?:,|$)/gy
  let m: RegExpExecArray | null
  while (re.lastIndex < list.length && (m = re.exec(list)) != null) {
    if (m[0] === '') break
    out.push(m[1] != null ? m[1].replace(/\\(.)/g, '$1') : m[2].trim())
  }
  if (out.length === 0) throw new ValidationError('Invalid in filter value')
  return out
}

function timeFilter (key: 'created_at' | 'updated_at', raw: string): Predicate {
  const m = /^(?:(eq|neq|gt|gte|lt|lte):)?(.+)$/.exec(raw)
  const when = m == null ? NaN : Date.parse(m[2])
  if (m == null || Number.isNaN(when)) throw new ValidationError(`Invalid time format for ${key}.`)
  const cmp = TIME_OPS[m[1] ?? 'eq']
  return i => cmp(Date.parse(i[key]), when)
}

/** Any other key matches an extra property, or a base attribute of that name (a DB column in Glance). */
function propertyFilter (key: string, value: string): Predicate {
  return (i) => {
    if (Object.hasOwn(i.properties, key)) return i.properties[key] === value
    if (!Object.hasOwn(i, key)) return false
    const base = (i as unknown as Record<string, unknown>)[key]
    return base != null && typeof base !== 'object' && String(base) === value
  }
}

/** Total order for the sort spec; nulls first in ascending order, as MySQL sorts them. */
export function compareBy (sort: readonly SortSpec[]): (a: ImageRecord, b: ImageRecord) => number {
  return (a, b) => {
    for (const { key, dir } of sort) {
      const c = compareValues(a[key], b[key])
      if (c !== 0) return dir === 'asc' ? c : -c
    }
    return 0
  }
}

function compareValues (a: string | number | null, b: string | number | null): number {
  if (a === b) return 0
  if (a == null) return -1
  if (b == null) return 1
  return a < b ? -1 : 1
}
