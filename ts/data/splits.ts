// Split files: one entry per line, in any of the formats used by the public repositories
// (see shared/data/splits/README.md):
//   id        2011_000068  or  aachen_000013_000019_leftImg8bit      (PRCL, U2PL VOC, CPS VOC)
//   path      leftImg8bit/train/jena/jena_000078_000019_leftImg8bit.png   (unlabeled image lists)
//   pair      JPEGImages/x.jpg SegmentationClass/x.png                (UniMatch: one space)
//   tab-pair  <image path>\t<mask path>                               (CPS Cityscapes)
// A file uses one format throughout. The final newline is optional, and blank lines after the last
// entry are ignored (a blank line between entries is an error). Windows line ends (CRLF)
// are accepted: the '\r' before each '\n' is stripped; any other '\r' is an error.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { posix } from 'node:path'

export { generateSplit, type GenerateSplitOptions, type GeneratedSplit, type ClassSource } from './split-generate.ts'

export interface SplitEntry {
  /** The image's identity: a bare id as written, else the first path's file name without extension. */
  id: string
  /** Image path relative to the dataset root, as written (path and pair lines). */
  image?: string
  /** Mask path relative to the dataset root, as written (pair lines). */
  label?: string
  /** 1-based line number in the split file. */
  line: number
}

export type SplitFormat = 'id' | 'path' | 'pair' | 'tab-pair'

const FORMAT_NAMES: Record<SplitFormat, string> = {
  id: 'a bare id',
  path: 'a single path',
  pair: "an 'image mask' pair (one space)",
  'tab-pair': "an 'image<TAB>mask' pair",
}

const IMAGE_EXT = /\.(jpe?g|png|bmp|tiff?|webp)$/i

/** File name without directory and extension: `a/b/x.tar.png` → `x.tar`. */
export function fileStem(path: string): string {
  const base = posix.basename(path)
  const dot = base.lastIndexOf('.')
  return dot > 0 ? base.slice(0, dot) : base
}

/** Split text into lines: strip a UTF-8 BOM, strip CR before LF, drop empty lines at the end (the
 *  final newline, and blank lines an editor left after the last entry). */
function splitLines(text: string): string[] {
  if (text.startsWith('\uFEFF')) text = text.slice(1)
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l))
  while (lines.at(-1) === '') lines.pop()
  return lines
}

function parseLine(raw: string, where: string): { format: SplitFormat; entry: Omit<SplitEntry, 'line'> } {
  if (raw === '') throw new Error(`${where}: blank line; expected one entry per line with no blank lines`)
  if (raw.includes('\r')) throw new Error(`${where}: carriage return inside the line; expected plain '\\n' or '\\r\\n' line ends`)
  if (raw.trim() !== raw) throw new Error(`${where}: leading or trailing whitespace in ${JSON.stringify(raw)}`)
  const pair = (sep: string, format: SplitFormat) => {
    const parts = raw.split(sep)
    if (parts.length !== 2 || parts.some((p) => p === '' || /\s/.test(p))) {
      throw new Error(`${where}: expected ${FORMAT_NAMES[format]}, got ${JSON.stringify(raw)}`)
    }
    const [image, label] = parts as [string, string]
    return { format, entry: { id: checkedStem(image, where), image, label } }
  }
  if (raw.includes('\t')) return pair('\t', 'tab-pair')
  if (/\s/.test(raw)) return pair(' ', 'pair')
  if (raw.includes('/') || IMAGE_EXT.test(raw)) return { format: 'path', entry: { id: checkedStem(raw, where), image: raw } }
  return { format: 'id', entry: { id: raw } }
}

function checkedStem(path: string, where: string): string {
  const stem = fileStem(path)
  if (stem === '' || path.endsWith('/')) throw new Error(`${where}: ${JSON.stringify(path)} names no file; expected an image path`)
  return stem
}

/** Parse a split file's text. `file` is used in error messages only. */
export function parseSplitText(text: string, file: string): SplitEntry[] {
  const lines = splitLines(text)
  if (lines.length === 0) throw new Error(`split file ${file} is empty; expected one entry per line`)
  const entries: SplitEntry[] = []
  const seen = new Map<string, number>()
  let first: SplitFormat | undefined
  lines.forEach((raw, i) => {
    const line = i + 1
    const where = `${file}:${line}`
    const { format, entry } = parseLine(raw, where)
    first ??= format
    if (format !== first) {
      throw new Error(`${where}: line is ${FORMAT_NAMES[format]} but line 1 is ${FORMAT_NAMES[first]}; a split file must use one format`)
    }
    const before = seen.get(entry.id)
    if (before !== undefined) throw new Error(`${where}: duplicate entry '${entry.id}' (also on line ${before})`)
    seen.set(entry.id, line)
    entries.push({ ...entry, line })
  })
  return entries
}

async function readBytes(path: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ENOENT') throw new Error(`split file ${path} does not exist`, { cause: err })
    if (e.code === 'EISDIR') throw new Error(`split file ${path} is a directory; expected a text file`, { cause: err })
    throw new Error(`cannot read split file ${path}: ${e.message}`, { cause: err })
  }
}

function utf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new Error(`split file ${file} is not UTF-8 text`)
  }
}

/** Read and parse a split file. */
export async function readSplit(path: string): Promise<SplitEntry[]> {
  return parseSplitText(utf8(await readBytes(path), path), path)
}

export interface SplitIdentity {
  /** SHA-256 of the file's bytes, full hex. */
  sha256: string
  /** Its first 16 hex digits (as in shared/data/splits/README.md). */
  sha16: string
  /** Number of lines (a missing final newline still counts the last line). */
  lines: number
  file: string
}

/** Identity of split text already in memory (bytes are hashed as they are; strings as UTF-8). */
export function identityOfText(text: string | Uint8Array, file: string): SplitIdentity {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text
  const sha256 = createHash('sha256').update(bytes).digest('hex')
  const str = typeof text === 'string' ? text : Buffer.from(bytes).toString('utf8')
  return { sha256, sha16: sha256.slice(0, 16), lines: splitLines(str).length, file }
}

/** Identity of a split file (a path) or of text in memory: the content hash stored with results. */
export async function splitIdentity(source: string | { text: string | Uint8Array; file: string }): Promise<SplitIdentity> {
  if (typeof source === 'string') return identityOfText(await readBytes(source), source)
  return identityOfText(source.text, source.file)
}
