import { readFile, rename, writeFile } from 'node:fs/promises'

/** What the cache remembers of an image across restarts (local to this agent, never replicated). */
export interface Entry {
  hits: number
  lastAccessed: number
  lastModified: number
  /** A cache entry Glance's cache API lists: fetched here through the mesh, or prefetched. */
  listed: boolean
  /** The operator pinned it: never evicted. */
  pinned: boolean
  /** This agent keeps it for its site (an import or copy-image placed it there): never evicted until the site lets it go. */
  sitePinned: boolean
}

/** The cache's per-image state in one small JSON file, written whole (temp file, then rename). */
export class CacheState {
  readonly #path: string
  readonly entries = new Map<string, Entry>()
  #dirty = false
  #timer: NodeJS.Timeout | undefined
  #writing: Promise<void> = Promise.resolve()

  constructor (path: string) {
    this.#path = path
  }

  async load (): Promise<void> {
    let text: string
    try {
      text = await readFile(this.#path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    // A torn or foreign file costs only LRU order and pins' memory, never data: start afresh.
    let parsed: unknown
    try { parsed = JSON.parse(text) } catch { return }
    if (typeof parsed !== 'object' || parsed == null) return
    for (const [id, e] of Object.entries(parsed as Record<string, Partial<Entry>>)) {
      this.entries.set(id, {
        hits: Number(e.hits) || 0,
        lastAccessed: Number(e.lastAccessed) || 0,
        lastModified: Number(e.lastModified) || 0,
        listed: e.listed === true,
        pinned: e.pinned === true,
        sitePinned: e.sitePinned === true
      })
    }
  }

  entry (imageId: string): Entry {
    let e = this.entries.get(imageId)
    if (e == null) this.entries.set(imageId, e = { hits: 0, lastAccessed: 0, lastModified: 0, listed: false, pinned: false, sitePinned: false })
    return e
  }

  /** Schedules a write; a burst of changes (every download start) becomes one write a second. */
  changed (): void {
    this.#dirty = true
    if (this.#timer != null) return
    this.#timer = setTimeout(() => { this.#timer = undefined; void this.flush() }, 1000)
    this.#timer.unref()
  }

  async flush (): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#writing = this.#writing.then(async () => {
      if (!this.#dirty) return
      this.#dirty = false
      const tmp = `${this.#path}.tmp`
      await writeFile(tmp, JSON.stringify(Object.fromEntries(this.entries)))
      await rename(tmp, this.#path)
    })
    await this.#writing
  }
}
