// The data pre-flight: every listed image and label is read and checked before training (or by
// `prcl check-data`), and every problem is reported at once, grouped by kind with counts and names.
//
// Per sample: the image exists, is readable and is a JPEG or PNG that decodes; the label (when
// the list has labels) is a PNG in palette or greyscale mode (an RGB label is an error, as in the
// worker, which refuses it), of the image's size, whose values (through the dataset's label LUT,
// if any) are class indices or 255 (ignore).
//
// How deep an image is checked (`level`):
//   full  JPEG: decoded completely (jpeg-js), after a walk of its segments to the EOI marker.
//         PNG: every chunk's CRC, the image data inflated to the size its header implies.
//   fast  JPEG: the segment walk only (SOI, frame header, every segment's length, the scan's
//         entropy-coded data up to EOI): a truncated file has no EOI and is found; corrupt
//         entropy-coded data inside a complete file is not.
//         PNG: the chunk walk with CRCs, up to IEND (image data not inflated).
// Labels are always decoded (they are small and their values are checked) when they are 8-bit and
// not interlaced, the forms this decoder reads (ts/data/png-decode.ts); other palette/greyscale
// forms that the worker (PIL) reads are checked structurally and listed as notes, values unchecked.
//
// `checkSamples` spreads the files over worker threads (ts/data/check-worker.ts).
import { availableParallelism } from 'node:os'
import { readFile } from 'node:fs/promises'
import { relative, isAbsolute } from 'node:path'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import * as zlib from 'node:zlib'
import { decode as decodeJpeg } from 'jpeg-js'
import type { SampleRef } from './dataset.ts'
import { crc32 as slowCrc32 } from './png.ts'
import { decodeLabelPng } from './png-decode.ts'

export type CheckLevel = 'fast' | 'full'

/** What is wrong with a file; 'label-unchecked' is a note, every other kind an error. */
export type FindingKind =
  | 'missing' | 'unreadable' | 'not-image' | 'undecodable'
  | 'label-mode' | 'size-mismatch' | 'label-values' | 'label-unchecked'

export interface Finding {
  kind: FindingKind
  /** Which file of the sample. */
  role: 'image' | 'label'
  file: string
  message: string
}

export interface SampleCheck {
  /** The image's size when its header could be read. */
  size: { width: number; height: number } | null
  findings: Finding[]
}

export interface CheckOptions {
  level: CheckLevel
  numClasses: number
  /** uint8[256]: stored value → train id (255 = ignore), or null. */
  labelLut: readonly number[] | null
}

const KIND_TEXT: Record<FindingKind, [string, string]> = {
  missing: ['file does not exist', 'files do not exist'],
  unreadable: ['file cannot be read', 'files cannot be read'],
  'not-image': ['file is not a JPEG or PNG image', 'files are not JPEG or PNG images'],
  undecodable: ['image does not decode (truncated or corrupt)', 'images do not decode (truncated or corrupt)'],
  'label-mode': ['label is not a palette or greyscale PNG', 'labels are not palette or greyscale PNGs'],
  'size-mismatch': ['label differs in size from its image', 'labels differ in size from their image'],
  'label-values': ['label holds values outside the classes and the ignore index', 'labels hold values outside the classes and the ignore index'],
  'label-unchecked': ['label could not have its values checked here (the worker reads it)', 'labels could not have their values checked here (the worker reads them)'],
}

/** Notes do not make a sample bad. */
export const isError = (f: Finding): boolean => f.kind !== 'label-unchecked'

const crc32: (b: Uint8Array) => number = typeof (zlib as { crc32?: unknown }).crc32 === 'function'
  ? (b) => (zlib as unknown as { crc32(b: Uint8Array): number }).crc32(b) >>> 0
  : slowCrc32

class Bad extends Error {
  constructor(readonly kind: FindingKind, message: string) { super(message) }
}

// ---------------------------------------------------------------------------------------------
// JPEG

const isSof = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc

/** Walk a JPEG's segments from SOI to EOI; the frame size. Throws Bad('undecodable') naming what is wrong. */
export function jpegStructure(b: Uint8Array): { width: number; height: number } {
  const n = b.length
  if (n < 2 || b[0] !== 0xff || b[1] !== 0xd8) throw new Bad('not-image', 'not a JPEG file (no SOI marker)')
  const u16 = (i: number) => (b[i]! << 8) | b[i + 1]!
  let i = 2
  let frame: { width: number; height: number } | null = null
  let scans = 0
  for (;;) {
    if (i + 2 > n) throw new Bad('undecodable', `JPEG is truncated (${n} bytes, no EOI marker)`)
    if (b[i] !== 0xff) throw new Bad('undecodable', `JPEG is corrupt: expected a marker at byte ${i}, found 0x${b[i]!.toString(16).padStart(2, '0')}`)
    let m = b[i + 1]!
    while (m === 0xff && i + 2 < n) { i++; m = b[i + 1]! } // fill bytes
    if (m === 0xd9) break
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) { i += 2; continue }
    if (m === 0xd8 || m === 0x00) throw new Bad('undecodable', `JPEG is corrupt: unexpected marker 0xff${m.toString(16).padStart(2, '0')} at byte ${i}`)
    if (i + 4 > n) throw new Bad('undecodable', `JPEG is truncated (${n} bytes, inside a segment header)`)
    const len = u16(i + 2)
    if (len < 2) throw new Bad('undecodable', `JPEG is corrupt: segment 0xff${m.toString(16)} at byte ${i} has length ${len}`)
    if (i + 2 + len > n) throw new Bad('undecodable', `JPEG is truncated (${n} bytes, inside a 0xff${m.toString(16)} segment at byte ${i})`)
    if (isSof(m)) {
      if (len < 8) throw new Bad('undecodable', 'JPEG frame header is too short')
      frame = { height: u16(i + 5), width: u16(i + 7) }
      if (frame.width < 1 || frame.height < 1) throw new Bad('undecodable', `JPEG frame size ${frame.width}x${frame.height} is not an image size`)
    }
    i += 2 + len
    if (m === 0xda) {
      if (!frame) throw new Bad('undecodable', 'JPEG is corrupt: a scan before the frame header')
      scans++
      // Entropy-coded data: runs until a marker other than a stuffed 0xff00 or a restart marker.
      while (i + 1 < n && !(b[i] === 0xff && b[i + 1] !== 0x00 && !(b[i + 1]! >= 0xd0 && b[i + 1]! <= 0xd7))) i++
      if (i + 1 >= n) throw new Bad('undecodable', `JPEG is truncated (${n} bytes, the image data ends without an EOI marker)`)
    }
  }
  if (!frame) throw new Bad('undecodable', 'JPEG has no frame header')
  if (scans === 0) throw new Bad('undecodable', 'JPEG has no image data (no scan)')
  return frame
}

function jpegDecodes(b: Uint8Array, size: { width: number; height: number }): void {
  try {
    const img = decodeJpeg(b, { useTArray: true, formatAsRGBA: false, maxResolutionInMP: 400, maxMemoryUsageInMB: 4096 })
    if (img.width !== size.width || img.height !== size.height) {
      throw new Error(`decoded ${img.width}x${img.height}, header says ${size.width}x${size.height}`)
    }
  } catch (e) {
    throw new Bad('undecodable', `JPEG does not decode: ${(e as Error).message}`)
  }
}

// ---------------------------------------------------------------------------------------------
// PNG

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
const COLOUR_NAMES: Record<number, string> = { 0: 'greyscale', 2: 'RGB', 3: 'palette', 4: 'greyscale+alpha', 6: 'RGBA' }
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }
const DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] }
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const
const MAX_PIXELS = 1 << 28

export interface PngHeader { width: number; height: number; depth: number; colour: number; interlace: number }

/** Bytes of a PNG's filtered image data (what IDAT inflates to). */
function pngDataBytes(h: PngHeader): number {
  const bits = CHANNELS[h.colour]! * h.depth
  const rows = (w: number, ht: number) => (w > 0 && ht > 0 ? ht * (Math.ceil((w * bits) / 8) + 1) : 0)
  if (!h.interlace) return rows(h.width, h.height)
  let total = 0
  for (const [x0, y0, dx, dy] of ADAM7) total += rows(Math.ceil((h.width - x0) / dx), Math.ceil((h.height - y0) / dy))
  return total
}

/** Walk a PNG's chunks (CRCs checked) to IEND; with `inflate`, the image data is inflated and its
 *  length checked against the header. */
export function pngStructure(b: Uint8Array, inflate: boolean): PngHeader {
  if (b.length < 8 || PNG_SIGNATURE.some((x, i) => b[i] !== x)) throw new Bad('not-image', 'not a PNG file (bad signature)')
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  let header: PngHeader | null = null
  const idat: Buffer[] = []
  let pos = 8
  for (;;) {
    if (pos + 12 > buf.length) throw new Bad('undecodable', `PNG is truncated (${buf.length} bytes, no IEND chunk)`)
    const length = buf.readUInt32BE(pos)
    const type = buf.toString('latin1', pos + 4, pos + 8)
    if (!/^[A-Za-z]{4}$/.test(type)) throw new Bad('undecodable', `PNG is corrupt: chunk at byte ${pos} has type ${JSON.stringify(type)}`)
    if (pos + 12 + length > buf.length) throw new Bad('undecodable', `PNG is truncated (${buf.length} bytes, inside the ${type} chunk at byte ${pos})`)
    if (crc32(buf.subarray(pos + 4, pos + 8 + length)) !== buf.readUInt32BE(pos + 8 + length)) {
      throw new Bad('undecodable', `PNG is corrupt: the ${type} chunk at byte ${pos} has a bad CRC`)
    }
    const data = buf.subarray(pos + 8, pos + 8 + length)
    if (!header && type !== 'IHDR') throw new Bad('undecodable', `PNG is corrupt: starts with a ${type} chunk, expected IHDR`)
    if (type === 'IHDR') {
      if (header) throw new Bad('undecodable', 'PNG is corrupt: two IHDR chunks')
      if (length !== 13) throw new Bad('undecodable', `PNG is corrupt: IHDR has ${length} bytes, expected 13`)
      header = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), depth: data[8]!, colour: data[9]!, interlace: data[12]! }
      const { width, height, depth, colour, interlace } = header
      if (width < 1 || height < 1 || width * height > MAX_PIXELS) throw new Bad('undecodable', `PNG size ${width}x${height} is out of range`)
      if (!DEPTHS[colour]?.includes(depth) || interlace > 1 || data[10] !== 0 || data[11] !== 0) {
        throw new Bad('undecodable', `PNG header is invalid (colour type ${colour}, bit depth ${depth}, compression ${data[10]}, filter ${data[11]}, interlace ${interlace})`)
      }
    } else if (type === 'IDAT') idat.push(data)
    else if (type === 'IEND') break
    pos += 12 + length
  }
  if (!header) throw new Bad('undecodable', 'PNG has no IHDR chunk')
  if (idat.length === 0) throw new Bad('undecodable', 'PNG has no image data (IDAT)')
  if (inflate) {
    const expected = pngDataBytes(header)
    let raw: Buffer
    try {
      raw = zlib.inflateSync(Buffer.concat(idat), { maxOutputLength: expected + 1 })
    } catch (e) {
      throw new Bad('undecodable', `PNG image data does not inflate (${(e as Error).message})`)
    }
    if (raw.length !== expected) throw new Bad('undecodable', `PNG image data has ${raw.length} bytes, its header needs ${expected}`)
  }
  return header
}

const describePng = (h: PngHeader) => `${COLOUR_NAMES[h.colour] ?? `colour type ${h.colour}`}, ${h.depth}-bit${h.interlace ? ', interlaced' : ''}`

// ---------------------------------------------------------------------------------------------
// Files

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    const b = await readFile(path)
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ENOENT') throw new Bad('missing', 'does not exist')
    if (e.code === 'EISDIR') throw new Bad('unreadable', 'is a directory')
    throw new Bad('unreadable', `cannot be read: ${e.message}`)
  }
}

function imageCheck(b: Uint8Array, level: CheckLevel): { width: number; height: number } {
  if (b.length === 0) throw new Bad('not-image', 'is empty')
  if (b[0] === 0xff && b[1] === 0xd8) {
    const size = jpegStructure(b)
    if (level === 'full') jpegDecodes(b, size)
    return size
  }
  if (b[0] === 0x89 && b[1] === 0x50) {
    const h = pngStructure(b, level === 'full')
    return { width: h.width, height: h.height }
  }
  throw new Bad('not-image', `starts with ${Buffer.from(b.subarray(0, 4)).toString('hex')}; expected a JPEG or PNG file`)
}

/** Check an encoded image (JPEG or PNG) at `level`; its size. Throws an Error saying what is
 *  wrong (the caller names the file). */
export function checkImageBytes(b: Uint8Array, level: CheckLevel = 'full'): { width: number; height: number } {
  return imageCheck(b, level)
}

/** Label values outside the classes and ignore: "50 (1,024 pixels)". */
function badValues(values: Uint8Array, opts: CheckOptions): string[] {
  const hist = new Uint32Array(256)
  for (let i = 0; i < values.length; i++) hist[values[i]!]!++
  const out: string[] = []
  for (let v = 0; v < 256; v++) {
    if (!hist[v]) continue
    const t = opts.labelLut ? opts.labelLut[v]! : v
    if (t === 255 || t < opts.numClasses) continue
    out.push(`${v}${opts.labelLut ? ` (train id ${t})` : ''} in ${hist[v]!.toLocaleString('en-US')} pixel${hist[v] === 1 ? '' : 's'}`)
  }
  return out
}

function labelCheck(b: Uint8Array, file: string, opts: CheckOptions, findings: Finding[]): { width: number; height: number } {
  const h = pngStructure(b, true)
  const size = { width: h.width, height: h.height }
  const ok = (h.colour === 0 && [2, 4, 8].includes(h.depth)) || h.colour === 3
  if (!ok) {
    throw new Bad('label-mode', `label PNG is ${describePng(h)}; a label must be an 8-bit palette or greyscale PNG of class indices ` +
      '(save the class map, not a colour rendering; convert an RGB mask to indices first)')
  }
  if (h.depth !== 8 || h.interlace) {
    findings.push({ kind: 'label-unchecked', role: 'label', file, message: `${describePng(h)}: values not checked here (8-bit, non-interlaced labels are)` })
    return size
  }
  const bad = badValues(decodeLabelPng(b, file).data, opts)
  if (bad.length) {
    const range = `0..${opts.numClasses - 1}`
    throw new Bad('label-values', `holds ${bad.length === 1 ? 'the value' : 'values'} ${bad.join(', ')}; ` +
      `expected class indices ${range} or 255 (ignore)${opts.labelLut ? ' after the dataset\'s label mapping' : ''}`)
  }
  return size
}

/** Check one sample's image and label (when it has one). Never throws. */
export async function checkSample(ref: SampleRef, opts: CheckOptions): Promise<SampleCheck> {
  const findings: Finding[] = []
  const guard = async <T>(role: 'image' | 'label', file: string, fn: () => Promise<T>): Promise<T | null> => {
    try {
      return await fn()
    } catch (e) {
      findings.push(e instanceof Bad
        ? { kind: e.kind, role, file, message: e.message }
        : { kind: 'undecodable', role, file, message: (e as Error).message })
      return null
    }
  }
  const [size, labelSize] = await Promise.all([
    guard('image', ref.image, async () => imageCheck(await readBytes(ref.image), opts.level)),
    ref.label === null ? null : guard('label', ref.label, async () => labelCheck(await readBytes(ref.label!), ref.label!, opts, findings)),
  ])
  if (size && labelSize && (size.width !== labelSize.width || size.height !== labelSize.height)) {
    findings.push({ kind: 'size-mismatch', role: 'label', file: ref.label!, message: `is ${labelSize.width}x${labelSize.height}, its image ${ref.image} is ${size.width}x${size.height}` })
  }
  return { size, findings }
}

// ---------------------------------------------------------------------------------------------
// Many samples, on worker threads

export interface CheckManyOptions extends CheckOptions {
  /** Threads to use; 0 checks in this thread. Default: the cores, at most 16, none for small lists. */
  threads?: number
  /** Called as samples finish (done, total). */
  progress?: (done: number, total: number) => void
}

const BATCH = 16

/** The worker thread's bootstrap: under tsx (a checkout), register its loader in the thread first. */
function workerEntry(): { code: string; workerData: { entry: string; tsx: string | null } } {
  const ts = import.meta.url.endsWith('.ts')
  const entry = new URL(ts ? './check-worker.ts' : './check-worker.js', import.meta.url).href
  // The ESM build of tsx's API (its CommonJS build resolves its loader wrongly inside a thread).
  const tsx = ts ? pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href : null
  const code = `const { workerData } = require('node:worker_threads')
;(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register()
  await import(workerData.entry)
})().catch((e) => { setImmediate(() => { throw e }) })`
  return { code, workerData: { entry, tsx } }
}

/** Check every sample (in list order in the result), spreading them over worker threads. */
export async function checkSamples(refs: SampleRef[], opts: CheckManyOptions): Promise<SampleCheck[]> {
  const base: CheckOptions = { level: opts.level, numClasses: opts.numClasses, labelLut: opts.labelLut }
  const threads = opts.threads ?? (refs.length < 4 * BATCH ? 0 : Math.min(16, availableParallelism(), Math.ceil(refs.length / BATCH)))
  const results: SampleCheck[] = new Array(refs.length)
  let done = 0
  if (threads <= 0) {
    let next = 0
    const lane = async () => {
      while (next < refs.length) {
        const i = next++
        results[i] = await checkSample(refs[i]!, base)
        opts.progress?.(++done, refs.length)
      }
    }
    await Promise.all(Array.from({ length: 8 }, lane))
    return results
  }
  const { code, workerData } = workerEntry()
  let next = 0
  const run = (w: Worker) => new Promise<void>((resolve, reject) => {
    let batch: number[] = []
    const send = () => {
      if (next >= refs.length) { resolve(); return }
      batch = []
      while (batch.length < BATCH && next < refs.length) batch.push(next++)
      w.postMessage({ refs: batch.map((i) => refs[i]), opts: base })
    }
    w.on('message', (out: SampleCheck[]) => {
      out.forEach((r, j) => { results[batch[j]!] = r })
      done += out.length
      opts.progress?.(done, refs.length)
      send()
    })
    w.on('error', reject)
    w.on('exit', (c) => { if (next < refs.length || results.includes(undefined as never)) reject(new Error(`a data-check thread exited (code ${c}) before its work was done`)) })
    send()
  })
  const workers = Array.from({ length: threads }, () => new Worker(code, { eval: true, workerData }))
  try {
    await Promise.all(workers.map(run))
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
  return results
}

// ---------------------------------------------------------------------------------------------
// Reports

export interface ListFinding extends Finding { list: string; line: number | null; id: string }

export interface CheckReport {
  level: CheckLevel
  /** Samples checked per list. */
  counts: Record<string, number>
  /** Every finding, errors and notes, in list order. */
  findings: ListFinding[]
  /** Samples with at least one error, per list (indices into that list). */
  bad: Record<string, number[]>
  errors: number
  notes: number
}

/** Gather the per-sample results of named lists into one report. */
export function makeReport(level: CheckLevel, lists: Array<{ list: string; refs: SampleRef[]; lines?: Array<number | null>; results: SampleCheck[] }>): CheckReport {
  const report: CheckReport = { level, counts: {}, findings: [], bad: {}, errors: 0, notes: 0 }
  for (const { list, refs, lines, results } of lists) {
    report.counts[list] = refs.length
    report.bad[list] = []
    results.forEach((r, i) => {
      if (r.findings.some(isError)) report.bad[list]!.push(i)
      for (const f of r.findings) {
        report.findings.push({ ...f, list, line: lines?.[i] ?? null, id: refs[i]!.id })
        if (isError(f)) report.errors++
        else report.notes++
      }
    })
  }
  return report
}

const ORDER: FindingKind[] = ['missing', 'unreadable', 'not-image', 'undecodable', 'label-mode', 'size-mismatch', 'label-values', 'label-unchecked']

/** The report as text: a line of totals, then each kind of problem with its count and files
 *  (`shown` per kind, then "… and N more"). Paths are shown relative to `root`. */
export function formatReport(r: CheckReport, root: string, shown = 10): string {
  const rel = (p: string) => {
    const q = relative(root, p)
    return q.startsWith('..') || isAbsolute(q) ? p : q
  }
  const total = Object.values(r.counts).reduce((a, b) => a + b, 0)
  const per = Object.entries(r.counts).map(([k, n]) => `${k} ${n.toLocaleString('en-US')}`).join(', ')
  const badSamples = Object.values(r.bad).reduce((a, b) => a + b.length, 0)
  const lines = [`checked ${total.toLocaleString('en-US')} samples under ${root} (${per}; ${r.level} check): ` +
    (r.errors === 0 ? 'no problems' : `${r.errors} problem${r.errors === 1 ? '' : 's'} in ${badSamples} sample${badSamples === 1 ? '' : 's'}`) +
    (r.notes ? `, ${r.notes} note${r.notes === 1 ? '' : 's'}` : '')]
  for (const kind of ORDER) {
    const fs = r.findings.filter((f) => f.kind === kind)
    if (!fs.length) continue
    lines.push(`  ${fs.length} ${KIND_TEXT[kind][fs.length === 1 ? 0 : 1]}:`)
    for (const f of fs.slice(0, shown)) {
      lines.push(`    ${rel(f.file)} (${f.list}${f.line ? ` line ${f.line}` : ''}): ${f.message}`)
    }
    if (fs.length > shown) lines.push(`    … and ${fs.length - shown} more`)
  }
  return lines.join('\n')
}
