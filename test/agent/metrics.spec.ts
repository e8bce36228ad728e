import { describe, expect, it } from 'vitest'
import { startAgent } from '@peerglance/testing'

describe('GET /peerglance/v1/ready', () => {
  it('answers 200 naming every part ready once the agent has started', async () => {
    await using agent = await startAgent()
    const res = await fetch(`${agent.url}/peerglance/v1/ready`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ stores: true, mesh: true })
  })
})

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
