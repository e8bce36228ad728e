import { Worker } from 'node:worker_threads'
import { HASH_WORKER_SCRIPT } from './hash-worker.ts'
import type { HashRequest } from './hash-worker.ts'

interface Waiter {
  resolve: (reply: string | null) => void
  reject: (err: Error) => void
}

/** One worker thread computing one digest; requests are answered in the order they were sent. */
export class HashThread {
  readonly #worker: Worker
  readonly #waiting: Waiter[] = []
  #failure: Error | undefined

  constructor (algorithm: string) {
    this.#worker = new Worker(HASH_WORKER_SCRIPT, { eval: true, workerData: { algorithm } })
    this.#worker.on('message', (reply: string | null) => { this.#waiting.shift()?.resolve(reply) })
    this.#worker.on('error', (err) => { this.#fail(err) })
    this.#worker.on('exit', (code) => { this.#fail(new Error(`hash worker exited with code ${code}`)) })
  }

  get healthy (): boolean {
    return this.#failure == null
  }

  /**
   * The bytes are posted, not copied, when they sit on a SharedArrayBuffer; the caller must not
   * change them until the returned promise settles.
   */
  async update (bytes: Uint8Array): Promise<void> {
    await this.#request({ op: 'update', bytes })
  }

  async digest (): Promise<string> {
    return (await this.#request({ op: 'digest' })) ?? ''
  }

  /** The hex digest of `bytes` alone (the running digest is left as it is); posted like `update`'s. */
  async digestOf (bytes: Uint8Array): Promise<string> {
    return (await this.#request({ op: 'digestOf', bytes })) ?? ''
  }

  /** Drops the running digest; resolves once every earlier request has been answered. */
  async reset (): Promise<void> {
    await this.#request({ op: 'reset' })
  }

  ref (): void { this.#worker.ref() }
  unref (): void { this.#worker.unref() }

  async terminate (): Promise<void> {
    this.#fail(new Error('hash worker terminated'))
    await this.#worker.terminate()
  }

  async #request (request: HashRequest): Promise<string | null> {
    if (this.#failure != null) throw this.#failure
    const { promise, resolve, reject } = Promise.withResolvers<string | null>()
    this.#waiting.push({ resolve, reject })
    this.#worker.postMessage(request)
    return await promise
  }

  #fail (err: Error): void {
    this.#failure ??= err
    for (const waiter of this.#waiting.splice(0)) waiter.reject(this.#failure)
  }
}
