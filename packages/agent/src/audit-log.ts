import { once } from 'node:events'
import { pino } from 'pino'
import type { AuditRecord, AuditSink } from '@peerglance/glance-api'

type Destination = ReturnType<typeof pino.destination>

/**
 * The audit trail: one JSON line per image action in its own file (pino's asynchronous file
 * writer, off the request path), reopened on SIGHUP so logrotate can move it away.
 */
export class AuditLog implements AuditSink {
  readonly #file: string
  #destination: Destination | undefined

  constructor (file: string) {
    this.#file = file
  }

  async start (): Promise<void> {
    const destination = pino.destination({ dest: this.#file, sync: false, mkdir: true, mode: 0o640 })
    await once(destination, 'ready')
    this.#destination = destination
  }

  write (record: AuditRecord): void {
    this.#destination?.write(`${JSON.stringify(record)}\n`)
  }

  /** Opens the file by its name again: after logrotate renamed it, writing goes on in a new one. */
  reopen (): void {
    this.#destination?.reopen()
  }

  async stop (): Promise<void> {
    const destination = this.#destination
    if (destination == null) return
    this.#destination = undefined
    destination.end()
    await once(destination, 'close')
  }
}
