/**
 * Disk-image format inspection and Glance's upload/import format decision.
 *
 * Mirrors oslo.utils `oslo_utils/imageutils/format_inspector.py` (the inspector Glance has used
 * since 2024) and the decision block of `glance/location.py` `ImageProxy.set_data`, see
 * glance-api.md §23. Pure functions over bytes: the caller buffers the first `HEAD_BYTES` (and,
 * for VMDK footers, the last `TAIL_BYTES`) of the upload while streaming it to the store.
 *
 * oslo inspects the whole stream; we only see the head (and optionally the tail). Where oslo
 * would read further than that we say so at the spot, and fail closed when safety depends on it.
 */
import { InvalidImageDataError } from '@peerglance/interface'

/**
 * How many leading bytes `inspect` needs. 64 KiB covers every fixed-position structure oslo
 * reads except VHDX's region table (at 192 KiB, only needed for its virtual size): the ISO
 * volume descriptor at 32 KiB + 2 KiB, the 512-byte qcow2/qed/vdi/vhd/gpt headers, LUKS's
 * 592-byte header and a VMDK descriptor at sector 1 (qemu writes 20 sectors of it).
 */
export const HEAD_BYTES = 64 * 1024

/**
 * How many trailing bytes `inspect` wants for a streamOptimized VMDK whose grain directory lives
 * in a footer: oslo's `EndCaptureRegion(1536)` (footer marker, footer header, end-of-stream marker).
 */
export const TAIL_BYTES = 1536

/** oslo's `ALL_FORMATS` keys, in its order (which is also our pick order for ambiguous content). */
const INSPECTABLE_FORMATS = ['raw', 'qcow2', 'vhd', 'vhdx', 'vmdk', 'vdi', 'qed', 'iso', 'gpt', 'luks'] as const

export type DetectedFormat = typeof INSPECTABLE_FORMATS[number]

export interface Inspection {
  format: DetectedFormat
  /** Size of the disk the image represents, when the format lets us read it from the head. */
  virtualSize: number | null
  /** Bytes in the upload (oslo's `actual_size`); Glance uses it for raw-labelled rich formats. */
  actualSize: number
  /**
   * Names of failed safety checks, as oslo names them ('backing_file', 'data_file', 'mbr', ...),
   * plus 'incomplete' (oslo: "Incomplete file cannot be safety checked") and 'multiple_formats'
   * (Glance: "Multiple formats detected"). Empty means safe to hand to qemu-img with `-f format`.
   */
  safetyFailures: string[]
}

export interface UploadCheckOptions {
  /** Glance `[image_format]/require_image_format_match` (default true). */
  requireImageFormatMatch?: boolean
  /** Glance `[image_format]/gpt_safety_checks_nonfatal` (default []), e.g. ['mbr']. */
  gptSafetyChecksNonfatal?: readonly string[]
}

interface Probe {
  virtualSize: number | null
  failures: string[]
}

/**
 * Detects the format of an image from its first bytes.
 *
 * @param head the first `min(HEAD_BYTES, totalSize)` bytes (more is fine, fewer means "file ends")
 * @param totalSize the size of the whole upload in bytes
 * @param tail the last `min(TAIL_BYTES, totalSize)` bytes; only consulted for VMDKs with a footer
 */
export function inspect (head: Uint8Array, totalSize: number, tail?: Uint8Array): Inspection {
  const bytes = new Bytes(head)
  const probes: Array<[DetectedFormat, (b: Bytes, size: number, tail?: Uint8Array) => Probe | null]> = [
    ['qcow2', probeQcow2],
    ['vhd', probeVhd],
    ['vhdx', probeVhdx],
    ['vmdk', probeVmdk],
    ['vdi', probeVdi],
    ['qed', probeQed],
    ['iso', probeIso],
    ['gpt', probeGpt],
    ['luks', probeLuks]
  ]
  const matches: Array<[DetectedFormat, Probe]> = []
  for (const [name, probe] of probes) {
    const result = probe(bytes, totalSize, tail)
    if (result !== null) matches.push([name, result])
  }

  if (matches.length === 0) {
    // oslo RawFileInspector: matches everything, no checks, virtual size = bytes read.
    return { format: 'raw', virtualSize: totalSize, actualSize: totalSize, safetyFailures: [] }
  }
  const names = matches.map(([name]) => name)
  if (names.length === 2 && names.includes('iso') && names.includes('gpt')) {
    // glance set_data: "bootable-as-block ISOs can legitimately have a GPT bootloader in front",
    // so iso+gpt is the ISO, and only the ISO's (null) safety checks run.
    const iso = matches.find(([name]) => name === 'iso')![1]
    return { format: 'iso', virtualSize: iso.virtualSize, actualSize: totalSize, safetyFailures: iso.failures }
  }
  const [format, first] = matches[0]
  const failures = [...first.failures]
  // oslo InspectWrapper.format raises "Multiple formats detected" for any other combination,
  // because "there may be something nefarious going on (i.e. hiding one header in another)".
  if (matches.length > 1) failures.unshift('multiple_formats')
  return { format, virtualSize: first.virtualSize, actualSize: totalSize, safetyFailures: failures }
}

/**
 * Glance's upload/import decision for the inspected content (glance/location.py set_data).
 * Throws `InvalidImageDataError` (HTTP 415 on `PUT /file`) where Glance would.
 * Returns the `virtual_size` to record, or null to leave it unset.
 */
export function checkUpload (
  diskFormat: string,
  containerFormat: string,
  inspection: Inspection,
  options: UploadCheckOptions = {}
): { virtualSize: number | null } {
  // set_data only wraps the stream in an InspectWrapper for bare containers.
  if (containerFormat !== 'bare') return { virtualSize: null }

  const detected = inspection.format
  let virtualSize: number | null = null
  if (detected === diskFormat) {
    virtualSize = inspection.virtualSize
  } else if (detected === 'raw' && !(INSPECTABLE_FORMATS as readonly string[]).includes(diskFormat)) {
    // ami/aki/ari/ploop: "not an inspectable type", allowed as long as nothing was recognised.
  } else if (diskFormat === 'raw') {
    // Glance accepts a rich format labelled raw with a warning and records the byte size rather
    // than the detected format's virtual size; the detected format's safety checks still run
    // below (so a qcow2 with a backing file labelled raw is rejected, CVE-2024-32498).
    virtualSize = inspection.actualSize
  } else if (options.requireImageFormatMatch ?? true) {
    // Glance's own wording (ImageFormatError in set_data).
    throw new InvalidImageDataError(`Image disk_format ${diskFormat} does not match stream data ${detected}`)
  }
  // With require_image_format_match off Glance skips the safety checks on a mismatch; we still
  // run them, since the content is still going to reach qemu-img somewhere.

  let fatal = inspection.safetyFailures
  if (detected === 'gpt') {
    // gpt_safety_checks_nonfatal only relaxes checks of content detected as gpt, and only when
    // every failure is on the list.
    const nonfatal = new Set(options.gptSafetyChecksNonfatal ?? [])
    if (fatal.every((name) => nonfatal.has(name))) fatal = []
  }
  if (fatal.length > 0) {
    // Glance answers 'Image failed safety checks' and logs the names; we put them in the body.
    throw new InvalidImageDataError(`Image failed safety checks: ${fatal.join(', ')}`)
  }
  // set_data: `if virtual_size: image.virtual_size = virtual_size`, so 0 leaves it unset.
  return { virtualSize: virtualSize !== null && virtualSize > 0 ? virtualSize : null }
}

/** Bounds-checked little/big-endian reads over the head. */
class Bytes {
  readonly data: Uint8Array
  readonly view: DataView
  constructor (data: Uint8Array) {
    this.data = data
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  }

  get length (): number { return this.data.length }
  has (n: number): boolean { return this.data.length >= n }
  u8 (at: number): number { return this.data[at] }
  u16le (at: number): number { return this.view.getUint16(at, true) }
  u16be (at: number): number { return this.view.getUint16(at, false) }
  u32le (at: number): number { return this.view.getUint32(at, true) }
  u32be (at: number): number { return this.view.getUint32(at, false) }
  u64le (at: number): bigint { return this.view.getBigUint64(at, true) }
  u64be (at: number): bigint { return this.view.getBigUint64(at, false) }
  /** True when the bytes at `at` are exactly `ascii` (latin-1, so '\xfb' means byte 0xfb). */
  is (at: number, ascii: string): boolean {
    if (this.data.length < at + ascii.length) return false
    for (let i = 0; i < ascii.length; i++) {
      if (this.data[at + i] !== ascii.charCodeAt(i)) return false
    }
    return true
  }
}

/** u64 sizes beyond 2^53 cannot be represented exactly; report them as unknown, not wrong. */
function toSize (value: bigint): number | null {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null
}

// qcow2 (oslo QcowInspector): big-endian header; oslo waits for 512 bytes before matching.
//   0 magic 'QFI\xfb', 4 version, 8 backing file offset, 24 size, 72 incompatible features (v3)
function probeQcow2 (b: Bytes): Probe | null {
  if (!b.has(512) || !b.is(0, 'QFI\xfb')) return null
  const failures: string[] = []
  if (b.u64be(8) !== 0n) failures.push('backing_file')
  const version = b.u32be(4)
  if (version === 3) {
    const features = b.u64be(72)
    // Bit 2 is "external data file" (qcow2.txt); oslo's I_FEATURES_DATAFILE_BIT works out to 0x04.
    if ((features & 0x04n) !== 0n) failures.push('data_file')
    // oslo's check_unknown_features allows `(1 << I_FEATURES_MAX_BIT) - 1` = bits 0-3 (dirty,
    // corrupt, data file, compression type); bit 4 (extended L2) and above are "unknown", so
    // Glance rejects `qemu-img create -o extended_l2=on` images and so do we.
    if ((features & ~0x0fn) !== 0n) failures.push('unknown_features')
  } else if (version !== 2) {
    // oslo: 'Unsupported qcow2 version' under the unknown_features check (this covers qcow v1).
    failures.push('unknown_features')
  }
  // Version 2 has no feature field: bytes 72.. are header extensions there, so oslo's
  // version-blind data_file test would misread them; we only test it for version 3.
  return { virtualSize: toSize(b.u64be(24)), failures }
}

// qed (oslo QEDInspector): recognised only to be refused, "not supported by anyone".
function probeQed (b: Bytes): Probe | null {
  if (!b.has(512) || !b.is(0, 'QED\0')) return null
  return { virtualSize: null, failures: ['banned'] }
}

// vhd (oslo VHDInspector): dynamic VHDs carry a copy of the 512-byte big-endian footer at 0
// (fixed VHDs only have it at the end, so they look raw to oslo too). oslo reads the size at
// 40..47 ("Disk size", the original size), not the current size at 48.
function probeVhd (b: Bytes): Probe | null {
  if (!b.is(0, 'conectix')) return null
  // oslo's format_match only needs the magic but safety_check needs the whole 512-byte footer.
  if (!b.has(512)) return { virtualSize: null, failures: ['incomplete'] }
  return { virtualSize: toSize(b.u64be(40)), failures: [] }
}

// vhdx (oslo VHDXInspector): 'vhdxfile' identity at 0. The virtual size lives in the metadata
// region found through the region table at 192 KiB, beyond the head, so we leave it unknown.
function probeVhdx (b: Bytes, totalSize: number): Probe | null {
  if (!b.is(0, 'vhdxfile')) return null
  // oslo's 64 KiB region-table capture at 192 KiB can never complete in a shorter file.
  const failures = totalSize < 256 * 1024 ? ['incomplete'] : []
  return { virtualSize: null, failures }
}

// vdi (oslo VDIInspector): 512-byte little-endian header, magic at 0x40, size at 0x170.
function probeVdi (b: Bytes): Probe | null {
  if (!b.has(512) || b.u32le(0x40) !== 0xbeda107f) return null
  return { virtualSize: toSize(b.u64le(0x170)), failures: [] }
}

// iso (oslo ISOInspector): ISO 9660 / UDF volume descriptor after the 32 KiB system area;
// oslo needs the whole 2 KiB descriptor before it will match.
const ISO_DESCRIPTOR = 32 * 1024
function probeIso (b: Bytes): Probe | null {
  if (!b.has(ISO_DESCRIPTOR + 2048)) return null
  if (!['CD001', 'NSR02', 'NSR03'].some((id) => b.is(ISO_DESCRIPTOR + 1, id))) return null
  // Only a primary volume descriptor (type 1) carries the size: blocks (LE half of the both-
  // endian u32 at 80) times block size (LE half of the both-endian u16 at 128).
  if (b.u8(ISO_DESCRIPTOR) !== 1) return { virtualSize: null, failures: [] }
  const size = b.u32le(ISO_DESCRIPTOR + 80) * b.u16le(ISO_DESCRIPTOR + 128)
  return { virtualSize: size > 0 ? size : null, failures: [] }
}

// gpt/mbr (oslo GPTInspector): a partition table is 0x55AA at 510 — but so is a FAT volume boot
// record, which oslo excludes when it has 2 FATs (0x10) and the fixed-disk media byte 0xF8 (0x15).
function probeGpt (b: Bytes, totalSize: number): Probe | null {
  if (!b.has(512) || b.u16le(510) !== 0xaa55) return null
  if (b.u8(0x10) === 2 && b.u8(0x15) === 0xf8) return null
  return { virtualSize: totalSize, failures: mbrIsSane(b) ? [] : ['mbr'] }
}

/** oslo check_mbr_partitions over the four 16-byte entries at 446. */
function mbrIsSane (b: Bytes): boolean {
  const used: number[] = []
  let protective = false
  for (let i = 0; i < 4; i++) {
    const entry = 446 + 16 * i
    const boot = b.u8(entry)
    if (boot !== 0x00 && boot !== 0x80) return false
    const type = b.u8(entry + 4)
    if (type !== 0) used.push(i)
    if (type === 0xee) {
      protective = true
      // The protective-MBR entry must start at CHS 0/2/0 and LBA 1 (UEFI spec).
      if (b.u8(entry + 1) !== 0 || b.u8(entry + 2) !== 2 || b.u8(entry + 3) !== 0) return false
      if (b.u32le(entry + 8) !== 1) return false
    }
  }
  // A GPT's protective entry must be the first and only one; a plain MBR needs at least one.
  if (protective && (used.length !== 1 || used[0] !== 0)) return false
  return used.length > 0
}

// luks (oslo LUKSInspector): big-endian LUKS1 header; 6-byte magic, u16 version at 6, payload
// offset in 512-byte sectors at 104; oslo captures 592 bytes (header and the 8 key slots).
function probeLuks (b: Bytes, totalSize: number): Probe | null {
  if (!b.is(0, 'LUKS\xba\xbe')) return null
  if (!b.has(592)) return { virtualSize: null, failures: ['incomplete'] }
  // LUKS2 shares the magic; neither oslo nor qemu's luks driver handle it.
  const failures = b.u16be(6) === 1 ? [] : ['version']
  // oslo: bytes read minus the header and key material that precede the payload.
  const payload = totalSize - b.u32be(104) * 512
  return { virtualSize: payload > 0 ? payload : null, failures }
}

// vmdk (oslo VMDKInspector): either a 512-byte little-endian "hosted sparse extent" header
//   0 'KDMV', 4 version, 12 capacity (sectors), 28 descriptor sector, 36 descriptor sectors,
//   56 grain directory offset (all-ones: the real one is in a footer)
// with an embedded text descriptor, or a bare text descriptor file.
const VMDK_DESC_OFFSET = 512
const VMDK_DESC_MAX = (1 << 20) - 1
const VMDK_GD_AT_END = 0xffffffffffffffffn
const VMDK_SAFE_TYPES = ['monolithicsparse', 'streamoptimized']

function probeVmdk (b: Bytes, totalSize: number, tail?: Uint8Array): Probe | null {
  // oslo's header region completes (min_length) at 64 bytes; anything shorter never matches.
  if (!b.has(64)) return null
  if (b.is(0, 'KDMV')) return probeSparseVmdk(b, totalSize, tail)
  return probeTextVmdk(b)
}

function probeSparseVmdk (b: Bytes, totalSize: number, tail?: Uint8Array): Probe | null {
  // oslo raises ImageFormatError for these, which drops vmdk from the candidates (so the
  // content ends up detected as something else, usually raw) rather than failing a check.
  const version = b.u32le(4)
  if (version < 1 || version > 3) return null
  if (b.u64le(28) * 512n !== BigInt(VMDK_DESC_OFFSET)) return null

  const failures: string[] = []
  const descSize = Number(bigMin(b.u64le(36) * 512n, BigInt(VMDK_DESC_MAX)))
  const descEnd = VMDK_DESC_OFFSET + descSize
  const desc = sliceToNul(b.data, VMDK_DESC_OFFSET, Math.min(descEnd, b.length))
  let type: string | null = null
  if (totalSize < descEnd) {
    failures.push('incomplete')
  } else if (!desc.padded && b.length < descEnd) {
    // The descriptor runs past the head with no NUL padding in sight: we cannot see all of it,
    // and its extent lines are exactly what CVE-2022-47951 abuses, so refuse rather than guess.
    failures.push('descriptor')
  } else {
    const text = asciiLower(desc.bytes)
    type = text === null ? null : createType(text)
    if (text === null || !descriptorIsSafe(text, type)) failures.push('descriptor')
  }

  if (b.u64le(56) === VMDK_GD_AT_END && !vmdkFooterIsSane(b, tail)) {
    // qemu prefers the footer's copy of the header, so oslo requires it to mirror the header.
    // Without the tail we cannot check it, so we fail closed: callers must pass `tail`.
    failures.push('footer')
  }
  // oslo only reports a size for the two subformats it trusts.
  const virtualSize = type !== null && VMDK_SAFE_TYPES.includes(type) ? toSize(b.u64le(12) * 512n) : null
  return { virtualSize, failures }
}

function probeTextVmdk (b: Bytes): Probe | null {
  // oslo treats content as a text descriptor when what it captured of the header (up to 512
  // bytes) is printable or whitespace ASCII (Python's isprintable/isspace: \t-\r, \x1c-\x1f, ' '-'~').
  const headerEnd = Math.min(512, b.length)
  for (let i = 0; i < headerEnd; i++) {
    const c = b.u8(i)
    if (!((c >= 0x20 && c <= 0x7e) || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f))) return null
  }
  const text = asciiLower(sliceToNul(b.data, 0, b.length).bytes)
  if (text === null) return null
  const type = createType(text)
  // oslo's format_match for a text descriptor is "a createType was found".
  if (type === null) return null
  const failures = descriptorIsSafe(text, type) ? [] : ['descriptor']
  // Beyond oslo: a descriptor-only file has no data of its own, every extent names another file
  // (resolved next to wherever qemu opens it), so there is no safe way to consume one.
  failures.push('descriptor_file')
  return { virtualSize: null, failures }
}

/** oslo _parse_descriptor: the value of `createType="..."` (lower-cased text), if sane. */
function createType (text: string): string | null {
  const key = 'createtype="'
  const start = text.indexOf(key)
  if (start < 0) return null
  const from = start + key.length
  const end = text.indexOf('"', from)
  // oslo refuses values of 64+ characters so a crafted descriptor cannot flood the logs.
  if (end < 0 || end - from >= 64) return null
  return text.slice(from, end)
}

/**
 * oslo check_descriptor: only monolithicSparse/streamOptimized, and every line must be a
 * comment, a `ddb...` line, a `key=value` header or an extent line (RW|RDONLY|NOACCESS ...)
 * whose file name has no '/'; at least one extent.
 */
function descriptorIsSafe (text: string, type: string | null): boolean {
  if (type === null || !VMDK_SAFE_TYPES.includes(type)) return false
  let extents = 0
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith('ddb')) continue
    const eq = line.indexOf('=')
    if (eq >= 0 && !line.slice(0, eq).includes(' ')) continue
    if (!['rw', 'rdonly', 'noaccess'].includes(line.split(' ')[0])) return false
    if (line.includes('/')) return false
    extents++
  }
  return extents > 0
}

/**
 * oslo check_footer over the last 1536 bytes: a footer marker (type 3), a copy of the sparse
 * header agreeing with ours and not itself deferring to a footer, then an end-of-stream marker.
 */
function vmdkFooterIsSane (head: Bytes, tail: Uint8Array | undefined): boolean {
  if (tail === undefined || tail.length < TAIL_BYTES) return false
  const t = new Bytes(tail.subarray(tail.length - TAIL_BYTES))
  const footer = 512
  if (!t.is(footer, 'KDMV')) return false
  if (t.u32le(footer + 4) !== head.u32le(4)) return false
  if (t.u64le(footer + 28) !== head.u64le(28) || t.u64le(footer + 36) !== head.u64le(36)) return false
  if (t.u64le(footer + 56) === VMDK_GD_AT_END) return false
  // Markers: u64 value, u32 size, u32 type, 496 zero bytes.
  const marker = (at: number, type: number, checkValue: boolean): boolean => {
    if (checkValue && t.u64le(at) !== 0n) return false
    if (t.u32le(at + 8) !== 0 || t.u32le(at + 12) !== type) return false
    for (let i = at + 16; i < at + 512; i++) if (t.u8(i) !== 0) return false
    return true
  }
  return marker(0, 3, false) && marker(1024, 0, true)
}

/**
 * Bytes from `start` up to the first NUL before `end` (oslo cuts the NUL-padded descriptor
 * there); `padded` says whether a NUL was seen, i.e. whether the text is known to be whole.
 */
function sliceToNul (data: Uint8Array, start: number, end: number): { bytes: Uint8Array, padded: boolean } {
  const region = data.subarray(start, Math.max(start, end))
  const nul = region.indexOf(0)
  return nul < 0 ? { bytes: region, padded: false } : { bytes: region.subarray(0, nul), padded: true }
}

/** oslo decodes descriptors as ASCII (failing on anything else) and compares lower-cased. */
function asciiLower (bytes: Uint8Array): string | null {
  let text = ''
  for (const c of bytes) {
    if (c > 0x7f) return null
    text += String.fromCharCode(c)
  }
  return text.toLowerCase()
}

function bigMin (a: bigint, b: bigint): bigint {
  return a < b ? a : b
}
