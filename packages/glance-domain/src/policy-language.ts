import { defineError } from '@peerglance/interface'

/**
 * The oslo.policy check language (oslo_policy/_parser.py, _checks.py): `@`, `!`, `role:X`,
 * `rule:NAME`, `KIND:MATCH` (e.g. `project_id:%(project_id)s`, `'public':%(visibility)s`,
 * `is_admin:True`), joined by `and`, `or`, `not` and parentheses, with `and` binding tighter
 * than `or`. Parsed once into a tree, evaluated per request.
 *
 * Two deliberate differences from oslo.policy, both failing closed: a malformed rule is an error
 * when the rules are loaded (oslo logs it and treats the rule as `!`), and a target value that is
 * null never matches (Python formats it as the string 'None', which equals a caller whose
 * project is None).
 */

/** What is known about the caller: `project_id`, `user_id`, `roles`, `is_admin`, ... */
export type Credentials = Readonly<Record<string, unknown>>
/** What the action is on: the image's fields, its `project_id` (owner), `member_id`, ... */
export type Target = Readonly<Record<string, string | number | boolean | null | undefined>>

export type Check =
  | { kind: 'true' } | { kind: 'false' }
  | { kind: 'and', checks: Check[] } | { kind: 'or', checks: Check[] } | { kind: 'not', check: Check }
  | { kind: 'rule', name: string }
  | { kind: 'role', match: string }
  | { kind: 'generic', key: string, match: string }

/** A rule that cannot be parsed, or rules that refer to each other in a loop: the operator's to fix. */
export class PolicySyntaxError extends defineError('PolicySyntaxError') {}

type Token = '(' | ')' | 'and' | 'or' | 'not' | { check: string }

/** Splits on whitespace; parentheses are peeled off the ends of words, since `%(x)s` holds some. */
function tokenize (rule: string): Token[] {
  const tokens: Token[] = []
  for (const word of rule.split(/\s+/)) {
    if (word === '') continue
    let body = word.replace(/^\(+/, '')
    for (let i = body.length; i < word.length; i++) tokens.push('(')
    if (body === '') continue
    const trimmed = body.replace(/\)+$/, '')
    const closing = body.length - trimmed.length
    body = trimmed
    const lower = body.toLowerCase()
    if (lower === 'and' || lower === 'or' || lower === 'not') tokens.push(lower)
    else if (body !== '') tokens.push({ check: body })
    for (let i = 0; i < closing; i++) tokens.push(')')
  }
  return tokens
}

function atom (text: string): Check {
  if (text === '@') return { kind: 'true' }
  if (text === '!') return { kind: 'false' }
  const colon = text.indexOf(':')
  if (colon < 0) throw new PolicySyntaxError(`'${text}' is not a check (expected KIND:MATCH, @ or !)`)
  const key = text.slice(0, colon)
  const match = text.slice(colon + 1)
  if (key === 'rule') return { kind: 'rule', name: match }
  if (key === 'role') return { kind: 'role', match }
  return { kind: 'generic', key, match }
}

/** Parses one check string; the empty string allows everyone, as in oslo.policy. */
export function parseRule (rule: string): Check {
  const tokens = tokenize(rule)
  if (tokens.length === 0) return { kind: 'true' }
  let at = 0
  const fail = (why: string): never => { throw new PolicySyntaxError(`cannot parse rule "${rule}": ${why}`) }
  // Recursive descent over a token list that a 64 KiB rule bounds; nesting is limited so an
  // operator's typo cannot exhaust the stack.
  const MAX_DEPTH = 100
  const or = (depth: number): Check => {
    if (depth > MAX_DEPTH) fail('nested too deep')
    const checks = [and(depth)]
    while (tokens[at] === 'or') { at++; checks.push(and(depth)) }
    return checks.length === 1 ? checks[0] : { kind: 'or', checks }
  }
  const and = (depth: number): Check => {
    const checks = [not(depth)]
    while (tokens[at] === 'and') { at++; checks.push(not(depth)) }
    return checks.length === 1 ? checks[0] : { kind: 'and', checks }
  }
  const not = (depth: number): Check => {
    if (depth > MAX_DEPTH) fail('nested too deep')
    if (tokens[at] === 'not') { at++; return { kind: 'not', check: not(depth + 1) } }
    const token = tokens[at++]
    if (token === '(') {
      const inner = or(depth + 1)
      if (tokens[at++] !== ')') fail('missing )')
      return inner
    }
    if (token == null || typeof token === 'string') return fail(token == null ? 'unexpected end' : `unexpected '${token}'`)
    return atom(token.check)
  }
  const check = or(0)
  if (at < tokens.length) fail(`unexpected '${String(tokens[at])}'`)
  return check
}

/** The rule names a check refers to through `rule:NAME`. */
export function referencedRules (check: Check): string[] {
  switch (check.kind) {
    case 'rule': return [check.name]
    case 'and': case 'or': return check.checks.flatMap(referencedRules)
    case 'not': return referencedRules(check.check)
    default: return []
  }
}

/** Python's `str()` of a value, as `%(key)s` formatting would print it; null means "no value". */
function pythonString (value: unknown): string | undefined {
  if (value == null) return undefined
  if (value === true) return 'True'
  if (value === false) return 'False'
  if (typeof value === 'string' || typeof value === 'number') return String(value)
  return undefined
}

/** `%(key)s` substitution from the target; undefined when a key is absent or null. */
function substitute (match: string, target: Target): string | undefined {
  let missing = false
  const out = match.replace(/%\(([^)]*)\)s/g, (_, key: string) => {
    const value = Object.hasOwn(target, key) ? pythonString(target[key]) : undefined
    if (value === undefined) missing = true
    return value ?? ''
  })
  return missing ? undefined : out
}

/** The left side of `KIND:MATCH` as a Python literal (`'public'`, `True`, `42`), if it is one. */
function literal (kind: string): string | undefined {
  const quoted = /^'(.*)'$|^"(.*)"$/.exec(kind)
  if (quoted != null) return quoted[1] ?? quoted[2]
  if (kind === 'True' || kind === 'False' || kind === 'None') return kind
  if (/^-?\d+(\.\d+)?$/.test(kind)) return kind
  return undefined
}

/** A dotted path into the credentials; lists match when any element does. */
function credentialMatches (value: unknown, path: readonly string[], match: string): boolean {
  if (path.length === 0) return pythonString(value) === match
  if (value == null || typeof value !== 'object') return false
  const [head, ...rest] = path
  if (!Object.hasOwn(value, head)) return false
  const next = (value as Record<string, unknown>)[head]
  if (Array.isArray(next)) return next.some(v => credentialMatches(v, rest, match))
  return credentialMatches(next, rest, match)
}

export type RuleLookup = (name: string) => Check | undefined

export function evaluate (check: Check, creds: Credentials, target: Target, rules: RuleLookup): boolean {
  switch (check.kind) {
    case 'true': return true
    case 'false': return false
    case 'and': return check.checks.every(c => evaluate(c, creds, target, rules))
    case 'or': return check.checks.some(c => evaluate(c, creds, target, rules))
    case 'not': return !evaluate(check.check, creds, target, rules)
    case 'rule': {
      // An unknown rule fails closed, as in oslo.policy.
      const rule = rules(check.name)
      return rule != null && evaluate(rule, creds, target, rules)
    }
    case 'role': {
      const role = substitute(check.match, target)
      const roles = creds.roles
      return role !== undefined && Array.isArray(roles) && roles.some(r => typeof r === 'string' && r.toLowerCase() === role.toLowerCase())
    }
    case 'generic': {
      const match = substitute(check.match, target)
      if (match === undefined) return false
      const value = literal(check.key)
      if (value !== undefined) return value === match
      return credentialMatches(creds, check.key.split('.'), match)
    }
  }
}
