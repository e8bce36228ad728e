/** Calls `task` for every item with at most `limit` calls pending; rejects with the first failure. */
export async function eachLimit<T> (items: Iterable<T>, limit: number, task: (item: T) => Promise<void>): Promise<void> {
  const iterator = items[Symbol.iterator]()
  let failed = false
  const lane = async (): Promise<void> => {
    for (let step = iterator.next(); !failed && step.done !== true; step = iterator.next()) {
      try {
        await task(step.value)
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  const lanes = Array.from({ length: Math.max(1, limit) }, lane)
  // Wait for every lane, so nothing is still running when the caller sees the failure.
  const results = await Promise.allSettled(lanes)
  const failure = results.find(result => result.status === 'rejected')
  if (failure != null) throw failure.reason
}
