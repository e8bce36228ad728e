/** What an operator command may touch of its process: bin.ts hands these in. */
export interface CommandIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean }
  stderr: NodeJS.WritableStream & { isTTY?: boolean }
  env: NodeJS.ProcessEnv
}

/** A failure the operator can act on: printed as `peerglance: <message>`, exit code 1 (2 for usage). */
export class CommandError extends Error {
  readonly exitCode: number
  constructor (message: string, exitCode = 1) {
    super(message)
    this.name = 'CommandError'
    this.exitCode = exitCode
  }
}

export const DEFAULT_URL = 'http://127.0.0.1:9292'
