// What every dataset provides: class names, an optional label look-up table, and the mapping
// from split entries to files. Reading gives encoded bytes; the worker decodes them.
import { statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { relative } from 'node:path'
import type { SplitEntry } from './splits.ts'

/** One sample's files, as absolute paths. `label` is null for unlabeled samples. */
export interface SampleRef {
  id: string; image: string; label: string | null
  /** An unlabeled sample's ground truth where it exists on disk: read only to measure
   *  pseudo-label quality (log.pseudo_quality), never trained on. */
  truth?: string
}

export interface ResolveOptions {
  /** Labeled lists need masks; unlabeled lists do not (mask paths in them are ignored). */
  needLabels: boolean
  /** Cityscapes: which subset bare stems belong to; tried train then val when absent. */
  subset?: 'train' | 'val'
  /** The split file the entries came from, for error messages. */
  splitFile?: string
  /** Resolve missing files too, without the existence check (the data check reports them, or
   *  data.skip_bad_samples leaves their samples out). */
  allowMissing?: boolean
}

export interface Dataset {
  name: string
  root: string
  numClasses: number
  classNames: string[]
  /** uint8[256] mapping stored label values to train ids (255 = ignore), or null */
  labelLut: number[] | null
  /** resolve split entries to files; unlabeled lists need no labels */
  resolve(entries: SplitEntry[], opts: ResolveOptions): SampleRef[]
}

export interface Sample { image: Uint8Array; label: Uint8Array | null }

/** True when `path` is an existing regular file (following links). */
export function isFile(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isFile() ?? false
}

/** True when `path` is an existing directory. */
export function isDir(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false
}

/** Throw unless `root` is a directory. */
export function checkRoot(kind: string, root: string): void {
  if (!isDir(root)) throw new Error(`${kind} dataset root ${root} does not exist or is not a directory`)
}

const SHOWN = 5

/**
 * Check that every sample's image (and label, when not null) exists; throw one error that gives
 * the counts and the first few missing files, e.g.
 * "3 of 662 images listed in <split file> are missing under <root>: JPEGImages/a.jpg (line 4), …".
 */
export function checkSamplesExist(refs: SampleRef[], entries: SplitEntry[], root: string, splitFile?: string, hint?: string): void {
  const where = splitFile ?? 'the split'
  const problems: string[] = []
  for (const kind of ['images', 'labels'] as const) {
    const missing: string[] = []
    let total = 0
    refs.forEach((ref, i) => {
      const path = kind === 'images' ? ref.image : ref.label
      if (path === null) return
      total++
      if (!isFile(path)) missing.push(`${relative(root, path)} (line ${entries[i]?.line ?? '?'})`)
    })
    if (missing.length === 0) continue
    const more = missing.length > SHOWN ? `, and ${missing.length - SHOWN} more` : ''
    problems.push(`${missing.length} of ${total} ${kind} listed in ${where} are missing under ${root}: ${missing.slice(0, SHOWN).join(', ')}${more}`)
  }
  if (problems.length) throw new Error(problems.join('; ') + (hint ? ` (${hint})` : ''))
}

const JPEG = [0xff, 0xd8, 0xff]
const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
const startsWith = (b: Uint8Array, sig: number[]) => b.length >= sig.length && sig.every((x, i) => b[i] === x)

async function readEncoded(path: string, what: 'image' | 'label'): Promise<Uint8Array> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new Error(e.code === 'ENOENT' ? `${what} ${path} does not exist` : `cannot read ${what} ${path}: ${e.message}`, { cause: err })
  }
  const ok = what === 'label' ? startsWith(bytes, PNG) : startsWith(bytes, PNG) || startsWith(bytes, JPEG)
  if (!ok) {
    const head = bytes.length === 0 ? 'is empty' : `starts with ${bytes.subarray(0, 4).toString('hex')}`
    throw new Error(`${what} ${path} ${head}; expected ${what === 'label' ? 'a PNG' : 'a JPEG or PNG'} file`)
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/**
 * Read a sample's encoded bytes (no decoding; only the file signature is checked). With
 * `skipBad`, a missing, unreadable or non-image file gives null (and `onSkip` hears why)
 * instead of an error.
 */
export async function readSample(ref: SampleRef): Promise<Sample>
export async function readSample(ref: SampleRef, opts: { skipBad?: false }): Promise<Sample>
export async function readSample(ref: SampleRef, opts: { skipBad: boolean; onSkip?: (err: Error) => void }): Promise<Sample | null>
export async function readSample(ref: SampleRef, opts: { skipBad?: boolean; onSkip?: (err: Error) => void } = {}): Promise<Sample | null> {
  try {
    const [image, label] = await Promise.all([
      readEncoded(ref.image, 'image'),
      ref.label === null ? Promise.resolve(null) : readEncoded(ref.label, 'label'),
    ])
    return { image, label }
  } catch (err) {
    if (!opts.skipBad) throw err
    opts.onSkip?.(err as Error)
    return null
  }
}
