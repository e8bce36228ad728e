import type { Logger } from '@peerglance/interface'

function noop (): void {}

export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop }
