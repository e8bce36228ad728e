export type HashRequest =
  | { op: 'update', bytes: Uint8Array }
  | { op: 'digest' }
  | { op: 'digestOf', bytes: Uint8Array }
  | { op: 'reset' }

/**
 * The hash worker's code: one running digest of one algorithm, and one-off digests of whole
 * buffers (`digestOf`). Every request gets exactly one reply, in order, so the parent can match
 * replies to requests with a queue and count what is in flight. It runs as a script made from
 * this function's text (`HASH_WORKER_SCRIPT`), not as a module loaded from this file: a worker
 * that loads a .ts file sets up its own type stripper, ~13 MB of RSS per worker and two workers per upload (28 against 14.5 MB each standalone,
 * docs/benchmarks.md, upload step 5). The text has no types left to strip, so it imports
 * nothing from outside the function.
 */
function hashWorker (): void {
  const { createHash } = process.getBuiltinModule('node:crypto')
  const { parentPort, workerData } = process.getBuiltinModule('node:worker_threads')
  const algorithm: string = workerData.algorithm
  let hash = createHash(algorithm)
  parentPort?.on('message', (request: HashRequest) => {
    if (request.op === 'update') {
      hash.update(request.bytes)
      parentPort.postMessage(null)
    } else if (request.op === 'digest') {
      parentPort.postMessage(hash.digest('hex'))
      hash = createHash(algorithm)
    } else if (request.op === 'digestOf') {
      parentPort.postMessage(createHash(algorithm).update(request.bytes).digest('hex'))
    } else {
      hash = createHash(algorithm)
      parentPort.postMessage(null)
    }
  })
}

/** For `new Worker(HASH_WORKER_SCRIPT, { eval: true })`. */
export const HASH_WORKER_SCRIPT = `(${hashWorker.toString()})()`
