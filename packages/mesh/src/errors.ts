import { defineError as define } from '@peerglance/interface'

/** A peer answered that it does not hold the chunk (or manifest) it was asked for. */
export class NotHeldError extends define('NotHeldError') {}
/**
 * A seed holds the chunk but sent it lately to another downloader, which passes it on
 * (seed-ledger.ts): not "not held", so the seed stays a holder of it.
 */
export class SentElsewhereError extends define('SentElsewhereError') {}
/** A peer did not answer a request in time; its stream was reset. */
export class RequestTimeoutError extends define('RequestTimeoutError') {}
/** A peer broke the chunk protocol (bad frame, wrong request id) or reported an error. */
export class ProtocolError extends define('ProtocolError') {}
/** The mesh is not running. */
export class NotStartedError extends define('NotStartedError') {}
