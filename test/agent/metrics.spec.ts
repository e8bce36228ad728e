import { describe, expect, it } from 'vitest'
import { startAgent } from '@peerglance/testing'

describe('GET /metrics', () => {
  it('names every metric peerglance_<subsystem>_<what>, once prefixed', async () => {
    await using agent = await startAgent()
    const text = await (await fetch(`${agent.url}/metrics`)).text()
    const names = new Set(text.split('\n').filter(l => l.startsWith('# TYPE ')).map(l => l.split(' ')[2]))
    expect(names.size).toBeGreaterThan(10)
    for (const name of names) expect(name).toMatch(/^peerglance_(?!process_process_)[a-z0-9_]+$/)
    expect(names).toContain('peerglance_process_cpu_seconds_total')
    expect(names).toContain('peerglance_process_resident_memory_bytes')
  })
})
