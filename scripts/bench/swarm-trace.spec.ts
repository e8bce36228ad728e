import { describe, expect, it } from 'vitest'
import { fetchSummary, parseChunkLog, parseCounter, parseQueues, parseSamples, reachedAt, samplerScript, summarize } from './swarm-trace.ts'

const RATE = 1_000_000

/** Samples every 100 ms of a seed sending at `seedRate(t)` (÷ RATE) and one host receiving it. */
function trace (until: number, seedRate: (t: number) => number): string {
  const lines: string[] = []
  let sent = 5_000
  for (let k = 0; k * 0.1 <= until + 1e-9; k++) {
    const t = k * 0.1
    if (k > 0) sent += seedRate(t - 0.05) * RATE * 0.1
    lines.push(`${(1000 + t).toFixed(6)} ${Math.round(sent)} 0 0 ${Math.round(sent)}`)
  }
  return lines.join('\n')
}

describe('the swarm bench link trace', () => {
  it('finds when the seed started, idled and was done, and the hosts\' tail after it', () => {
    // Starts at 0.5 s, full rate, idle 3.0–3.5 s, half rate 5.0–6.0 s, done at 8.0 s.
    const rate = (t: number): number => t < 0.5 ? 0 : t < 3 ? 1 : t < 3.5 ? 0 : t < 5 ? 1 : t < 6 ? 0.5 : t < 8 ? 1 : 0
    const samples = parseSamples(`garbage\n${trace(10, rate)}\n1 2`, 2, 1000)
    expect(samples).toHaveLength(101)
    const s = summarize(samples, RATE, [8.5, 9.25])
    expect(s.seedFirst).toBeCloseTo(0.5, 5)
    expect(s.seedDone).toBeCloseTo(8.0, 1)
    // 7 s of sending at full rate minus 0.5 s idle and 0.5 s at half: 6.5 s needed (99.5 % of it).
    expect(s.seedNeeded).toBeCloseTo(6.5 * 0.995, 2)
    expect(s.seedIdle).toBeGreaterThan(0.95)
    expect(s.seedIdle).toBeLessThan(1.1)
    expect(s.gaps.map(g => [g.from, g.to].map(x => Math.round(x * 10) / 10))).toEqual([[3, 3.5], [5, 6]])
    expect(s.gaps[0].rate).toBeCloseTo(0, 5)
    expect(s.gaps[1].rate).toBeCloseTo(0.5, 5)
    expect(s.after.map(a => Math.round(a * 10) / 10)).toEqual([0.5, 1.3])
    expect(s.profile).toHaveLength(19)
    expect(s.profile[0]).toBe(0)
    expect(s.profile[2]).toBeCloseTo(1, 5)
    expect(s.profile[6]).toBeCloseTo(0, 5)
  })

  it('reads the counters of every host in one loop', () => {
    const script = samplerScript(3, 100)
    expect(script).toContain('/sys/class/net/h2/statistics/rx_bytes')
    expect(script).toContain('read -t 0.1 -u $pause')
    expect(script).not.toContain('h3')
  })

  it('adds up the seed\'s send queues from ss -tin, skipping the TCP state lines and the ports asked', () => {
    const text = [
      'T 1000.5',
      '0      434584  10.77.0.1:43941 10.77.0.2:35782',
      '\t bbr wscale:10,10 rto:244 rtt:40.232/8.504 cwnd:216 bytes_sent:4176866 notsent:173944',
      '0      0       10.77.0.1:4001  10.77.0.4:55010',
      '\t bbr wscale:10,10 rto:204 rtt:2.7/4.041 cwnd:152',
      '0      1000    10.77.0.1:4001  10.77.0.5:55011',
      '0      20456   10.77.0.1:43941 10.77.0.4:47954',
      '\t ts sack cubic wscale:7,7 rto:204 rtt:1.5/0.75'
    ].join('\n')
    expect(parseQueues(text, 1000, [4001])).toEqual([{ t: 0.5, queued: 434584 + 20456, busy: 2 }])
  })

  it('reads each downloader\'s fetches and its reader\'s waits from the agent\'s debug lines', () => {
    const line = (ms: number, msg: string): string => JSON.stringify({ level: 20, time: 1_000_000 + ms, component: 'peerglance:swarm', msg })
    const text = [
      line(100, 'reader waits for 0'),
      line(110, 'fetch 0 from SEED (urgent-mine)'),
      line(120, 'fetch 5 from PEER (announced)'),
      'not json',
      line(130, 'reader waits for 1'),
      line(150, 'fetch 1 from PEER (urgent)'),
      line(400, 'fetched 5'),
      line(700, 'reader waits for 0'),
      line(1_510, 'fetched 0'),
      line(1_600, 'fetched 1'),
      line(1_700, 'fetch 9 from SEED (mine)')
    ].join('\n')
    const { fetches, waits } = parseChunkLog(text, 1_000)
    expect(fetches.map(f => [f.index, f.peer, f.reason])).toEqual([[5, 'PEER', 'announced'], [0, 'SEED', 'urgent-mine'], [1, 'PEER', 'urgent']])
    expect(fetches[1].got - fetches[1].asked).toBeCloseTo(1.4, 5)
    // The first wait for a chunk counts.
    expect([...waits.keys()]).toEqual([0, 1])
    expect(waits.get(0)).toBeCloseTo(0.1, 5)
    expect(waits.get(1)).toBeCloseTo(0.13, 5)
    const s = fetchSummary(fetches, waits, 'SEED')
    expect(s.fromSeed).toMatchObject({ n: 1 })
    expect(s.fromSeed.median).toBeCloseTo(1.4, 5)
    expect(s.fromOthers.n).toBe(2)
    expect(s.fromOthers.max).toBeCloseTo(1.45, 5)
    // Blocked from 0.1 (chunk 0) until 1.6 (chunk 1, waited for since 0.13): overlapping waits count once.
    expect(s.blocked).toBeCloseTo(1.5, 5)
  })

  it('reads counters of one value and finds when they reached a share of their end', () => {
    const points = parseCounter('1000.0 500\n1000.5 600\nbad\n1001.0 1500\n1001.5 2500', 1000)
    expect(points).toEqual([[0, 0], [0.5, 100], [1, 1000], [1.5, 2000]])
    expect(reachedAt(points, 0.5)).toBe(1)
    expect(reachedAt(points, 1)).toBe(1.5)
    expect(reachedAt([], 0.5)).toBeNaN()
  })
})
