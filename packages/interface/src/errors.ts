/**
 * Every error the domain raises. Callers match on `err.name` (it survives duplicated package
 * copies where `instanceof` does not); glance-api maps names to HTTP statuses in one table.
 * Messages are Glance's own wording where Glance has one, because clients show them verbatim.
 */
export class PeerglanceError extends Error {
  static readonly errorName: string = 'PeerglanceError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = (this.constructor as typeof PeerglanceError).errorName
  }
}

/** A base class for one error condition, named for matching on `err.name`. */
export function defineError (errorName: string): typeof PeerglanceError {
  return class extends PeerglanceError { static override readonly errorName = errorName }
}
const define = defineError

/** The image does not exist, was deleted, or the caller may not see it (Glance answers 404 for all three). */
export class ImageNotFoundError extends define('ImageNotFoundError') {}
export class MemberNotFoundError extends define('MemberNotFoundError') {}
/** Generic 404 for things that are not images (a tag, a disabled import method). */
export class NotFoundError extends define('NotFoundError') {}
/** The caller may see the target but not do this to it. */
export class ForbiddenError extends define('ForbiddenError') {}
export class ReadOnlyPropertyError extends define('ReadOnlyPropertyError') {
  constructor (key: string) { super(`Attribute '${key}' is read-only.`) }
}
export class ReservedPropertyError extends define('ReservedPropertyError') {
  constructor (key: string) { super(`Attribute '${key}' is reserved.`) }
}
export class ImageProtectedError extends define('ImageProtectedError') {
  constructor (id: string) { super(`Image ${id} is protected and cannot be deleted.`) }
}
/** A status change the state table forbids, or an action on an image in the wrong status. */
export class InvalidStatusTransitionError extends define('InvalidStatusTransitionError') {}
export class ConflictError extends define('ConflictError') {}
export class ValidationError extends define('ValidationError') {}
export class LimitExceededError extends define('LimitExceededError') {}
export class ImageTooLargeError extends define('ImageTooLargeError') {}
/** This agent's disk or cache cap cannot hold the data (Glance's StorageFull: 413). */
export class StorageFullError extends define('StorageFullError') {}
export class UnsupportedMediaTypeError extends define('UnsupportedMediaTypeError') {}
export class InvalidImageDataError extends define('InvalidImageDataError') {}
export class RangeNotSatisfiableError extends define('RangeNotSatisfiableError') {}
export class NotAuthenticatedError extends define('NotAuthenticatedError') {}
/** The identity service cannot be asked (down, or refusing the agent): the request is refused, never let through. */
export class AuthUnavailableError extends define('AuthUnavailableError') {}
/** The image was deleted while its data was being written (Glance answers 410). */
export class ImageGoneError extends define('ImageGoneError') {}
/** The agent is stopping; in-flight uploads end with this. */
export class ShuttingDownError extends define('ShuttingDownError') {}
/** A chunk's bytes do not hash to its CID. Never reaches a client: the chunk is discarded. */
export class ChunkIntegrityError extends define('ChunkIntegrityError') {}
/** No local copy of a chunk and nowhere to get it from. */
export class ChunkUnavailableError extends define('ChunkUnavailableError') {}
/** The client hung up or the request was aborted. */
export class AbortedError extends define('AbortedError') {}
