// What agents say to each other besides chunk bytes (docs/benchmarks.md, "The chatter between
// agents during a download"): yamux frames by type and stream protocol, streams opened, bytes, and
// gossipsub RPCs by content (messages per topic, IHAVE, IWANT, GRAFT, PRUNE, IDONTWANT, duplicates).
// Two uses:
//
//   CHATTER_COUNTS_DIR=/tmp/counts node scripts/bench/swarm.ts --only peerglance \
//     --node-args=--import=./scripts/bench/chatter-counts.ts
//     each agent appends its counters to /tmp/counts/<pid>.jsonl every 500 ms (measurement only:
//     it wraps @libp2p/yamux's and @libp2p/gossipsub's classes in the agent's process)
//   node scripts/bench/chatter-counts.ts /tmp/counts 06:10:54 06:11:08
//     per host (h0..hN, from the agent's --data-dir) and the downloaders' mean, what the counters
//     gained between those UTC times of today (the swarm bench logs the download's end)
import { appendFileSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

type Counters = Record<string, number>

if (process.argv[1]?.endsWith('chatter-counts.ts') === true) summarize(process.argv[2], process.argv[3], process.argv[4])
else if (process.env.CHATTER_COUNTS_DIR != null) await install(process.env.CHATTER_COUNTS_DIR)

async function install (dir: string): Promise<void> {
  const out = join(dir, `${process.pid}.jsonl`)
  const c: Counters = {}
  const inc = (k: string, n = 1): void => { c[k] = (c[k] ?? 0) + n }
  const root = new URL('../../node_modules/', import.meta.url).href
  const { YamuxMuxer } = await import(`${root}@libp2p/yamux/dist/src/muxer.js`)
  const { GossipSub } = await import(`${root}@libp2p/gossipsub/dist/src/gossipsub.js`)
  const types = ['data', 'win', 'ping', 'goaway']
  const protocolOf = (muxer: any, id: number): string => {
    if (id === 0) return '-'
    const stream = muxer.streams?.find?.((s: any) => s.streamId === id)
    const protocol = String(stream?.protocol ?? '')
    return protocol === '' ? '(negotiating)' : protocol.replace(/^\/(peerglance|ipfs|meshsub|libp2p)\//, '')
  }
  const count = (dir: 'out' | 'in', muxer: any, header: any, bytes: number): void => {
    const p = protocolOf(muxer, header.streamID)
    inc(`yamux.${dir}.${types[header.type]}.${p}`)
    inc(`yamux-bytes.${dir}.${p}`, 12 + bytes)
    if ((header.flag & 1) !== 0 && header.streamID !== 0) inc(`yamux.${dir}.open`)
  }
  const send = YamuxMuxer.prototype.sendFrame
  YamuxMuxer.prototype.sendFrame = function (header: any, data?: Uint8Array) {
    count('out', this, header, data?.byteLength ?? 0)
    return send.call(this, header, data)
  }
  const handle = YamuxMuxer.prototype.handleFrame
  YamuxMuxer.prototype.handleFrame = function (frame: any) {
    const result = handle.call(this, frame)
    count('in', this, frame.header, frame.header.type === 0 ? frame.header.length : 0)
    return result
  }
  const rpc = (dir: 'out' | 'in', r: any): void => {
    inc(`gossip.${dir}.rpc`)
    for (const m of r.messages ?? []) {
      inc(`gossip.${dir}.msg.${m.topic}`)
      inc(`gossip-bytes.${dir}.msg.${m.topic}`, m.data?.byteLength ?? 0)
    }
    for (const k of ['ihave', 'iwant', 'graft', 'prune', 'idontwant']) if ((r.control?.[k]?.length ?? 0) > 0) inc(`gossip.${dir}.${k}`, r.control[k].length)
  }
  const sendRpc = GossipSub.prototype.sendRpc
  GossipSub.prototype.sendRpc = function (id: unknown, r: unknown) {
    const sent = sendRpc.call(this, id, r)
    if (sent === true) rpc('out', r)
    return sent
  }
  const received = GossipSub.prototype.handleReceivedRpc
  GossipSub.prototype.handleReceivedRpc = function (from: unknown, r: unknown) {
    rpc('in', r)
    return received.call(this, from, r)
  }
  const validate = GossipSub.prototype.validateReceivedMessage
  GossipSub.prototype.validateReceivedMessage = async function (...args: unknown[]) {
    const result = await validate.apply(this, args)
    inc(`gossip.in.${String(result?.code ?? 'unknown')}`)
    return result
  }
  appendFileSync(out, `${JSON.stringify({ argv: process.argv.join(' ') })}\n`)
  setInterval(() => { appendFileSync(out, `${JSON.stringify({ t: Date.now(), c })}\n`) }, 500).unref()
}

function summarize (dir: string | undefined, from: string | undefined, to: string | undefined): void {
  if (dir == null || from == null || to == null) throw new Error('usage: node scripts/bench/chatter-counts.ts DIR HH:MM:SS HH:MM:SS')
  const today = new Date().toISOString().slice(0, 10)
  const t0 = Date.parse(`${today}T${from}Z`)
  const t1 = Date.parse(`${today}T${to}Z`)
  const hosts = new Map<number, Counters>()
  for (const name of readdirSync(dir).filter(n => n.endsWith('.jsonl'))) {
    const lines = readFileSync(join(dir, name), 'utf8').trim().split('\n').map(l => JSON.parse(l))
    const host = /agent-\d+-h(\d+)/.exec(String(lines[0]?.argv))?.[1]
    if (host == null) continue
    const at = (t: number): Counters => lines.filter(l => l.t != null && l.t <= t).at(-1)?.c ?? {}
    const [a, b] = [at(t0), at(t1)]
    hosts.set(Number(host), Object.fromEntries(Object.keys(b).map(k => [k, b[k] - (a[k] ?? 0)]).filter(([, v]) => v !== 0)))
  }
  const order = [...hosts.keys()].sort((x, y) => x - y)
  const keys = [...new Set(order.flatMap(h => Object.keys(hosts.get(h)!)))].sort()
  const downloaders = order.filter(h => h !== 0)
  console.log(['counter', ...order.map(h => `h${h}`), 'mean h1..'].join('\t'))
  for (const k of keys) {
    const values = order.map(h => hosts.get(h)![k] ?? 0)
    const mean = downloaders.reduce((sum, h) => sum + (hosts.get(h)![k] ?? 0), 0) / Math.max(1, downloaders.length)
    console.log([k, ...values, mean.toFixed(1)].join('\t'))
  }
}
