// Worker entry: one running digest of one algorithm. Every request gets exactly one reply, in
// order, so the parent can match replies to requests with a queue and count what is in flight.
import { createHash } from 'node:crypto'
import { parentPort, workerData } from 'node:worker_threads'
import type { HashRequest } from './hash-thread.ts'

const algorithm: string = workerData.algorithm
let hash = createHash(algorithm)

parentPort?.on('message', (request: HashRequest) => {
  if (request.op === 'update') {
    hash.update(request.bytes)
    parentPort?.postMessage(null)
  } else if (request.op === 'digest') {
    parentPort?.postMessage(hash.digest('hex'))
    hash = createHash(algorithm)
  } else {
    hash = createHash(algorithm)
    parentPort?.postMessage(null)
  }
})
