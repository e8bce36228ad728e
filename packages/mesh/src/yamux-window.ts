/**
 * yamux window updates once half the receive window is used, not after every data frame.
 * @libp2p/yamux answers each data frame it reads with a window update for the bytes it took: for
 * the agents' small messages (gossip, HAVE, metadata sync, peer exchange) that doubled the frames
 * on every libp2p connection, each one a Noise message and a socket write on one side and a read,
 * a decryption and a decode on the other (docs/benchmarks.md, issue 8). The yamux spec leaves the
 * moment to the receiver; Go's yamux (and py-libp2p's) send an update once half the window is
 * used, and so does this. A sender that has used half its window has had an update by the time it
 * could run out, so nothing stalls; flags (SYN/ACK) and a resumed stream still go at once.
 *
 * @libp2p/yamux has no option for it, so its stream class's method is wrapped, once per process.
 */
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'

/** The parts of a yamux stream this relies on (TypeScript calls them private). */
interface WindowState {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

let installed = false

/**
 * Installs the half-window rule on @libp2p/yamux's streams. Returns false when the stream class
 * is not built the way this expects (another yamux version): updates then go after every frame,
 * which is correct, only dearer.
 */
export function windowUpdatesAtHalf (): boolean {
  if (installed) return true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate?: (this: WindowState) => void }
  const update = proto.sendWindowUpdate
  if (typeof update !== 'function') return false
  proto.sendWindowUpdate = function (this: WindowState): void {
    if (this.state === StreamState.Established && typeof this.recvWindowCapacity === 'number' && this.recvWindowCapacity > this.recvWindow / 2) return
    update.call(this)
  }
  installed = true
  return true
}
