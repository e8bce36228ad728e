// What each host's link carried over time in the shaped swarm (scripts/bench/swarm.ts --trace):
// the bound is the seed's uplink (S / u_seed), so every moment it does not send at its rate adds
// to the slowest host. A sampler in the bridge namespace reads each host veth's counters every
// ~100 ms (on the bridge side, a host's rx is what it sent, its tx what it received, after the
// host's own HTB); `summarize` says where the seed's link was not full and how long the hosts
// took after it was done.

/** One reading: seconds since the download began, then bytes per host (cumulative). */
export interface LinkSample {
  t: number
  /** What host i sent (its upload), cumulative bytes. */
  sent: number[]
  /** What host i received (its download), cumulative bytes. */
  received: number[]
}

export interface LinkSummary {
  /** The seed's first byte beyond the idle trickle, s. */
  seedFirst: number
  /** When the seed had sent 99.5 % of what it sent, s: its share of the bound is over. */
  seedDone: number
  /** Seed bytes ÷ its rate: what its link needed at full rate, s. */
  seedNeeded: number
  /** seedDone − seedFirst − seedNeeded: the seed link's idle time before it was done, s. */
  seedIdle: number
  /** Intervals (≥ 2 samples) before seedDone where the seed sent under 80 % of its rate. */
  gaps: Array<{ from: number, to: number, rate: number }>
  /** Each host's completion (from the bench), minus seedDone. */
  after: number[]
  /** The seed's rate ÷ its capacity per 0.5 s, up to the last host done. */
  profile: number[]
}

/** A bash loop running `body` every `everyMs` without a fork per reading (`read -t` on an empty pipe is the sleep). */
function loop (body: string, everyMs: number): string {
  return `exec {pause}<> <(:); while :; do ${body}; read -t ${everyMs / 1000} -u $pause; done`
}

/** The sampler in the bridge namespace, printing "t sent0 received0 sent1 …". */
export function samplerScript (hosts: number, everyMs: number): string {
  const reads = Array.from({ length: hosts }, (_, i) =>
    `read -r s < /sys/class/net/h${i}/statistics/rx_bytes; read -r r < /sys/class/net/h${i}/statistics/tx_bytes; line+=" $s $r"`).join('; ')
  return loop(`line=$EPOCHREALTIME; ${reads}; echo "$line"`, everyMs)
}

/** A sampler in a host's namespace: "t bytes" its loopback carried (the HTTP download to curl). */
export function loopbackSamplerScript (everyMs: number): string {
  return loop('read -r x < /sys/class/net/lo/statistics/tx_bytes; echo "$EPOCHREALTIME $x"', everyMs)
}

/**
 * The seed's queues: its established sockets (`ss -tin`: Recv-Q Send-Q local peer, then a line of
 * TCP state: cwnd, rtt, retransmissions, delivery rate) every `everyMs`.
 */
export function queueSamplerScript (everyMs: number): string {
  return loop('echo "T $EPOCHREALTIME"; ss -tinH state established', everyMs)
}

/** Per reading: bytes the seed's bulk sockets (neither `skipPorts`) had queued to send, and on how many sockets. */
export function parseQueues (text: string, epoch0: number, skipPorts: number[]): Array<{ t: number, queued: number, busy: number }> {
  const out: Array<{ t: number, queued: number, busy: number }> = []
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f[0] === 'T' && f.length === 2) {
      out.push({ t: Number(f[1]) - epoch0, queued: 0, busy: 0 })
      continue
    }
    const last = out[out.length - 1]
    // A socket's line starts with its queues; the TCP state line after it (ss -i) does not.
    if (last == null || f.length < 4 || !/^\d+$/.test(f[0])) continue
    const ports = [f[2], f[3]].map(ep => Number(ep.slice(ep.lastIndexOf(':') + 1)))
    if (ports.some(p => skipPorts.includes(p))) continue
    const sendQ = Number(f[1])
    if (sendQ > 0) {
      last.queued += sendQ
      last.busy++
    }
  }
  return out
}

/** Parses the sampler's output; times relative to `epoch0` (s since the Unix epoch). */
export function parseSamples (text: string, hosts: number, epoch0: number): LinkSample[] {
  const out: LinkSample[] = []
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/).map(Number)
    if (f.length !== 1 + 2 * hosts || f.some(x => !Number.isFinite(x))) continue
    out.push({ t: f[0] - epoch0, sent: f.filter((_, k) => k > 0 && k % 2 === 1), received: f.filter((_, k) => k > 0 && k % 2 === 0) })
  }
  return out
}

/**
 * Where the seed's link (host 0) was not full between its first byte and its last, and the tail.
 * `rate` is the link's capacity in bytes per second; `done` the hosts' completion times (s).
 */
export function summarize (samples: LinkSample[], rate: number, done: number[]): LinkSummary {
  const at = samples.filter(s => s.t >= 0)
  if (at.length < 2) throw new Error('too few link samples')
  const base = at[0].sent[0]
  const total = at[at.length - 1].sent[0] - base
  // The idle trickle (pings, gossip) is a few KB/s: the first sample 64 KiB past the start is data.
  const first = at.find(s => s.sent[0] - base > 64 * 1024) ?? at[0]
  const last = at.find(s => s.sent[0] - base >= 0.995 * total) ?? at[at.length - 1]
  const prev = at[Math.max(0, at.indexOf(first) - 1)]
  const seedFirst = prev.t
  const seedDone = last.t
  const seedNeeded = 0.995 * total / rate
  const gaps: LinkSummary['gaps'] = []
  let open: { from: number, to: number, bytes: number, n: number } | undefined
  for (let k = at.indexOf(first); k < at.length && at[k].t <= seedDone; k++) {
    const dt = at[k].t - at[k - 1].t
    const bytes = at[k].sent[0] - at[k - 1].sent[0]
    if (dt > 0 && bytes / dt < 0.8 * rate) {
      if (open == null) open = { from: at[k - 1].t, to: at[k].t, bytes, n: 1 }
      else { open.to = at[k].t; open.bytes += bytes; open.n++ }
    } else if (open != null) {
      if (open.n >= 2) gaps.push({ from: open.from, to: open.to, rate: open.bytes / (open.to - open.from) / rate })
      open = undefined
    }
  }
  if (open != null && open.n >= 2) gaps.push({ from: open.from, to: open.to, rate: open.bytes / (open.to - open.from) / rate })
  const end = Math.max(...done)
  const profile: number[] = []
  for (let t = 0; t < end; t += 0.5) {
    const a = sampleAt(at, t)
    const b = sampleAt(at, t + 0.5)
    profile.push(b.t > a.t ? (b.sent[0] - a.sent[0]) / (b.t - a.t) / rate : 0)
  }
  return { seedFirst, seedDone, seedNeeded, seedIdle: seedDone - seedFirst - seedNeeded, gaps, after: done.map(d => d - seedDone), profile }
}

/** "t bytes" lines as [t − epoch0, bytes − the first reading]. */
export function parseCounter (text: string, epoch0: number): Array<[number, number]> {
  const out: Array<[number, number]> = []
  let first: number | undefined
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/).map(Number)
    if (f.length !== 2 || !f.every(Number.isFinite)) continue
    first ??= f[1]
    out.push([f[0] - epoch0, f[1] - first])
  }
  return out
}

/** When a cumulative counter first reached `share` of its last value (NaN if never). */
export function reachedAt (points: Array<[number, number]>, share: number): number {
  const total = points.length > 0 ? points[points.length - 1][1] : 0
  return points.find(([, v]) => v >= share * total)?.[0] ?? NaN
}

/** The last sample at or before t (the first one if none). */
function sampleAt (samples: LinkSample[], t: number): LinkSample {
  let lo = 0
  for (let k = 0; k < samples.length && samples[k].t <= t; k++) lo = k
  return samples[lo]
}

/** One chunk fetch of a download session, from its debug lines (session.ts): times in s since `epoch0`. */
export interface ChunkFetch { index: number, peer: string, reason: string, asked: number, got: number }

/**
 * A downloader's fetches and its reader's waits from the agent's debug log (`--log-level debug`):
 * "fetch I from PEER (REASON)", "fetched I" and "reader waits for I", one pino JSON line each.
 */
export function parseChunkLog (text: string, epoch0: number): { fetches: ChunkFetch[], waits: Map<number, number> } {
  const asked = new Map<number, { peer: string, reason: string, at: number }>()
  const fetches: ChunkFetch[] = []
  const waits = new Map<number, number>()
  for (const line of text.split('\n')) {
    if (!line.includes('"msg":"fetch') && !line.includes('"msg":"reader waits')) continue
    let entry: { time?: number, msg?: string }
    try {
      entry = JSON.parse(line)
    } catch {
      continue
    }
    if (typeof entry.time !== 'number' || typeof entry.msg !== 'string') continue
    const t = entry.time / 1000 - epoch0
    let m = /^fetch (\d+) from (\S+) \((\S+)\)$/.exec(entry.msg)
    if (m != null) {
      asked.set(Number(m[1]), { peer: m[2], reason: m[3], at: t })
      continue
    }
    m = /^fetched (\d+)$/.exec(entry.msg)
    if (m != null) {
      const index = Number(m[1])
      const a = asked.get(index)
      if (a != null) fetches.push({ index, peer: a.peer, reason: a.reason, asked: a.at, got: t })
      continue
    }
    m = /^reader waits for (\d+)$/.exec(entry.msg)
    if (m != null && !waits.has(Number(m[1]))) waits.set(Number(m[1]), t)
  }
  return { fetches, waits }
}

/**
 * What a downloader's fetches took from the seed and from the others (median and slowest, s),
 * and how long its reader was blocked in all (the union of its waits, each until the chunk came).
 * A downloader whose fetches from the seed take several times its others' holds every reader
 * back: each blocks on the front of that downloader's share of the seed's chunks in turn.
 */
export function fetchSummary (fetches: ChunkFetch[], waits: Map<number, number>, seed: string): { fromSeed: { n: number, median: number, max: number }, fromOthers: { n: number, median: number, max: number }, blocked: number } {
  const stats = (list: ChunkFetch[]): { n: number, median: number, max: number } => {
    const took = list.map(f => f.got - f.asked).sort((a, b) => a - b)
    return { n: took.length, median: took.length > 0 ? took[took.length >> 1] : NaN, max: took.length > 0 ? took[took.length - 1] : NaN }
  }
  const got = new Map(fetches.map(f => [f.index, f.got]))
  const spans = [...waits].filter(([i]) => got.has(i)).map(([i, at]) => [at, got.get(i) as number]).filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0])
  let blocked = 0
  let end = -Infinity
  for (const [a, b] of spans) {
    if (b <= end) continue
    blocked += b - Math.max(a, end)
    end = b
  }
  return { fromSeed: stats(fetches.filter(f => f.peer === seed)), fromOthers: stats(fetches.filter(f => f.peer !== seed)), blocked }
}
