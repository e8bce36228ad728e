import { execFile } from 'node:child_process'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import { InvalidImageDataError } from '@peerglance/interface'
import type { ConvertedImage, ImageConverter } from '@peerglance/interface'
import { HEAD_BYTES, TAIL_BYTES } from '@peerglance/glance-domain'

/** Under the data dir: conversions write their source and result there, and a restart empties it. */
export const CONVERT_DIR = 'convert'
/** What qemu-img may use (Glance runs `qemu-img info` under 1 GiB of address space and 2 s of CPU). */
const INFO_LIMITS = ['--as=1073741824', '--cpu=30']
const CONVERT_TIMEOUT_MS = 30 * 60_000

/**
 * Glance's image_conversion plugin with qemu-img: the source goes to a temporary file, the format
 * inspector checks it (through `check`), `qemu-img info -f <from>` must agree and name no backing
 * or data file, then `qemu-img convert -f <from> -O <to>` writes the result, which the caller
 * ingests and inspects again. qemu-img never probes a format (always `-f`), and runs under
 * `prlimit` as Glance runs it (CVE-2015-5162, CVE-2024-32498).
 */
export class QemuImgConverter implements ImageConverter {
  readonly #dir: string

  constructor (init: { tmpDir: string }) {
    this.#dir = init.tmpDir
  }

  async convert (source: AsyncIterable<Uint8Array>, opts: { from: string, to: string, check: (head: Uint8Array, size: number, tail: Uint8Array) => void, signal?: AbortSignal }): Promise<ConvertedImage> {
    await mkdir(this.#dir, { recursive: true })
    const dir = await mkdtemp(join(this.#dir, 'convert-'))
    const dispose = async (): Promise<void> => { await rm(dir, { recursive: true, force: true }) }
    try {
      const input = join(dir, 'source')
      const output = join(dir, 'converted')
      await pipeline(Readable.from(source), createWriteStream(input), { signal: opts.signal })
      const { size } = await stat(input)
      const file = await open(input, 'r')
      try {
        const head = Buffer.alloc(Math.min(HEAD_BYTES, size))
        await file.read(head, 0, head.length, 0)
        const tail = Buffer.alloc(Math.min(TAIL_BYTES, size))
        await file.read(tail, 0, tail.length, size - tail.length)
        opts.check(head, size, tail)
      } finally {
        await file.close()
      }
      const info = JSON.parse(await run('prlimit', [...INFO_LIMITS, 'qemu-img', 'info', '--output=json', '-f', opts.from, input], opts.signal)) as Record<string, unknown>
      if (info.format !== opts.from) throw new InvalidImageDataError(`qemu-img reads the image as ${String(info.format)}, not ${opts.from}`)
      if (info['backing-filename'] != null || info['full-backing-filename'] != null) throw new InvalidImageDataError('Image has a backing file; refused before conversion')
      const specific = (info['format-specific'] as { data?: Record<string, unknown> } | undefined)?.data
      if (specific?.['data-file'] != null) throw new InvalidImageDataError('Image has an external data file; refused before conversion')
      await run('qemu-img', ['convert', '-f', opts.from, '-O', opts.to, input, output], opts.signal)
      const converted = await stat(output)
      return { body: createReadStream(output), size: converted.size, dispose }
    } catch (err) {
      await dispose()
      throw err
    }
  }
}

async function run (command: string, args: string[], signal?: AbortSignal): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile(command, args, { signal, timeout: CONVERT_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err != null) reject(new InvalidImageDataError(`${command === 'prlimit' ? args[INFO_LIMITS.length] : command} failed: ${(stderr || err.message).trim().slice(0, 500)}`))
      else resolve(stdout)
    })
  })
}
