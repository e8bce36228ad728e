import type { ImageRecord, MetadataStore, TaskRecord } from '@peerglance/interface'
import { describe, expect, it } from 'vitest'
import { IMPORT_TASK_PROPERTY, ImportService } from '../src/image-import.ts'
import type { ImportComponents } from '../src/image-import.ts'

/** The metadata store's contract as the import uses it: a write shows at once, its disk write completes later (here: when released). */
function slowDiskStore (image: ImageRecord, task: TaskRecord): { metadata: MetadataStore, release: () => void } {
  const images = new Map([[image.id, image]])
  const tasks = new Map([[task.id, task]])
  const pending: Array<() => void> = []
  const later = async (): Promise<void> => await new Promise<void>(resolve => { pending.push(resolve) })
  const metadata = {
    getImage: (id: string) => images.get(id),
    tasks: () => [...tasks.values()],
    putImage: async (record: ImageRecord) => { images.set(record.id, record); await later() },
    putTask: async (record: TaskRecord) => { tasks.set(record.id, record); await later() }
  } as unknown as MetadataStore
  return { metadata, release: () => { for (const resolve of pending.splice(0)) resolve() } }
}

describe('an import task that ends', () => {
  it('shows its end and the image unlocked together, before either reaches the disk', async () => {
    const at = '2026-11-30T04:00:00Z'
    const task: TaskRecord = { id: 't1', type: 'api_image_import', status: 'processing', owner: null, image_id: 'i1', request_id: null, user_id: null, input: { backend: [] }, result: null, message: '', created_at: at, updated_at: at, expires_at: null }
    const image = { id: 'i1', status: 'queued', properties: { [IMPORT_TASK_PROPERTY]: 't1', keep: 'me' } } as unknown as ImageRecord
    const { metadata, release } = slowDiskStore(image, task)
    const imports = new ImportService({ metadata } as unknown as ImportComponents)
    // recover() ends a task whose agent stopped; every way an import ends goes through the same step.
    const ended = imports.recover()
    await new Promise(resolve => setImmediate(resolve))
    expect(metadata.tasks()[0]).toMatchObject({ status: 'failure' })
    // Before: the lock stayed until the task's disk write was done, and a client read it (imports.spec under load).
    expect(metadata.getImage('i1')?.properties).toEqual({ keep: 'me' })
    release()
    expect(await ended).toBe(1)
  })
})
