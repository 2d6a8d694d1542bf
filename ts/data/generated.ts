// Writing a generated dataset in the Pascal VOC layout: the part the shape generator (synth.ts)
// and the handwritten-digit generator (digits.ts) share. Images are rendered one by one, written
// into a sibling temporary directory with their split files and classes.txt, hashed, described in
// a manifest (`<generator>.json`-style keys in `synth.json`) and moved into place at the end, so a
// dataset directory is either the previous one or the new one, never half of each.
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { encodeRgbJpeg } from './jpeg.ts'
import { encodeLabelPng } from './png.ts'
import { Rng, STREAM } from '../rng.ts'

/** The generators whose output may be replaced by another generated dataset. */
export const GENERATORS = ['prcl-synth', 'prcl-digits'] as const

export interface Rendered { rgb: Uint8Array; label: Uint8Array }

/** One labeled/unlabeled split, as the ids of its files. */
export interface GeneratedSplit { labeled: string[]; unlabeled: string[] }

export interface GeneratedSpec {
  out: string
  generator: (typeof GENERATORS)[number]
  version: number
  /** The options as recorded in synth.json. */
  options: Record<string, unknown>
  classes: readonly string[]
  /** Square images of this side. */
  size: number
  /** Training images (indices 0..train-1), then `val` validation images. */
  train: number
  val: number
  quality: number
  id: (index: number) => string
  render: (index: number) => Rendered
  /** The split directories (relative to out, e.g. splits/16/0) and their lists, from each training
   *  image's class-presence bits (bit c: class c has at least a few labeled pixels). */
  splits: (present: number[], trainIds: string[]) => Array<{ dir: string } & GeneratedSplit>
  /** Extra manifest fields, after the class statistics. */
  extra?: Record<string, unknown>
}

export interface GeneratedSummary {
  /** Absolute output directory. */
  out: string
  ids: { train: string[]; val: string[] }
  classes: string[]
  /** Each split: its absolute directory and lists. */
  splits: Array<{ dir: string } & GeneratedSplit>
  /** Files the hash covers: every file written except synth.json. */
  files: number
  /** sha256 over "<relative path>\0<sha256 hex of the file>\n" for those files in path order. */
  sha256: string
}

async function isReplaceable(dir: string): Promise<boolean> {
  let entries: string[]
  try {
    if (!(await stat(dir)).isDirectory()) return false
    entries = await readdir(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true
    throw e
  }
  if (entries.length === 0) return true
  try {
    return (GENERATORS as readonly string[]).includes(JSON.parse(await readFile(join(dir, 'synth.json'), 'utf8')).generator)
  } catch {
    return false
  }
}

/** Writes the dataset `spec` describes (see the top of this file); refuses a non-empty `out` that
 *  is not a generated dataset. */
export async function writeGenerated(spec: GeneratedSpec): Promise<GeneratedSummary> {
  const out = resolve(spec.out)
  const what = spec.generator === 'prcl-digits' ? 'digits' : 'synth'
  if (!(await isReplaceable(out))) throw new Error(`${what}: ${out} exists and is not an empty directory or a generated dataset; refusing to replace it`)
  await mkdir(dirname(out), { recursive: true })
  const tmp = `${out}.partial-${process.pid}-${Date.now().toString(36)}`
  const hashes = new Map<string, string>()
  const put = async (rel: string, data: Uint8Array | string) => {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
    hashes.set(rel.split(sep).join('/'), createHash('sha256').update(bytes).digest('hex'))
    await writeFile(join(tmp, rel), bytes)
  }
  const nClasses = spec.classes.length
  try {
    await mkdir(join(tmp, 'JPEGImages'), { recursive: true })
    await mkdir(join(tmp, 'SegmentationClass'), { recursive: true })
    const total = spec.train + spec.val
    const ids = [...Array(total).keys()].map(spec.id)
    const present: number[] = []
    const pixels = new Float64Array(nClasses)
    let ignored = 0
    const minPixels = Math.max(4, Math.round(spec.size * spec.size * 0.002))
    let pending: Promise<unknown>[] = []
    for (let i = 0; i < total; i++) {
      const { rgb, label } = spec.render(i)
      const counts = new Uint32Array(256)
      for (const l of label) counts[l]!++
      let mask = 0
      for (let c = 0; c < nClasses; c++) {
        pixels[c]! += counts[c]!
        if (counts[c]! >= minPixels) mask |= 1 << c
      }
      ignored += counts[255]!
      if (i < spec.train) present.push(mask)
      const id = ids[i]!
      pending.push(put(join('JPEGImages', `${id}.jpg`), encodeRgbJpeg(spec.size, spec.size, rgb, spec.quality)))
      pending.push(put(join('SegmentationClass', `${id}.png`), encodeLabelPng(spec.size, spec.size, label)))
      if (pending.length >= 64) { await Promise.all(pending); pending = [] }
    }
    await Promise.all(pending)

    const train = ids.slice(0, spec.train)
    const val = ids.slice(spec.train)
    const splits = spec.splits(present, train)
    for (const s of splits) {
      await mkdir(join(tmp, s.dir), { recursive: true })
      await put(join(s.dir, 'labeled_filename.txt'), s.labeled.join('\n'))
      await put(join(s.dir, 'unlabeled_filename.txt'), s.unlabeled.join('\n'))
      await put(join(s.dir, 'valid_filename.txt'), val.join('\n'))
    }
    await put('classes.txt', spec.classes.join('\n'))

    const paths = [...hashes.keys()].sort()
    const agg = createHash('sha256')
    for (const p of paths) agg.update(`${p}\0${hashes.get(p)}\n`)
    const sha256 = agg.digest('hex')
    const allPixels = total * spec.size * spec.size
    const first = splits[0]!
    const manifest = {
      generator: spec.generator,
      version: spec.version,
      options: spec.options,
      classes: spec.classes,
      splitDir: first.dir.split(sep).join('/'),
      ...(splits.length > 1 ? { splitDirs: splits.map((s) => s.dir.split(sep).join('/')) } : {}),
      counts: { train: train.length, val: val.length, labeled: first.labeled.length, unlabeled: first.unlabeled.length },
      pixelFraction: Object.fromEntries(spec.classes.map((c, i) => [c, Number((pixels[i]! / (allPixels - ignored)).toFixed(4))])), // of the labeled pixels
      ignoreFraction: Number((ignored / allPixels).toFixed(4)),
      ...spec.extra,
      files: paths.length,
      hash: 'sha256 over "<path>\\0<sha256 of file>\\n" for every file but synth.json, paths sorted',
      sha256,
    }
    await writeFile(join(tmp, 'synth.json'), JSON.stringify(manifest, null, 2) + '\n')

    if (!(await isReplaceable(out))) throw new Error(`${what}: ${out} appeared while generating and is not a generated dataset; refusing to replace it`)
    await rm(out, { recursive: true, force: true })
    await rename(tmp, out)
    return { out, ids: { train, val }, classes: [...spec.classes], splits: splits.map((s) => ({ ...s, dir: join(out, s.dir) })), files: paths.length, sha256 }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true })
    throw e
  }
}

/** Picks labeled images among the training images, one list per size in `sizes`, so that every
 *  class is present in each: a cover first — for each class, rarest first, the first image (in an
 *  order shuffled from `seed`) that shows it, or, when that takes more images than the smallest
 *  size, a greedy set cover — then the other images in the shuffled order. Every list starts with
 *  the same cover and goes on in the same order, so a smaller split's images are among a larger one's. */
export function chooseLabeled(present: number[], sizes: readonly number[], classNames: readonly string[], seed: number, what: string): number[][] {
  const classes = classNames.length
  const order = Rng.keyed(seed, STREAM.synthSplit).permutation(present.length)
  const all = 2 ** classes - 1
  const union = present.reduce((a, m) => a | m, 0)
  if (union !== all) {
    const missing = [...Array(classes).keys()].filter((c) => !(union & (1 << c))).map((c) => classNames[c]).join(', ')
    throw new RangeError(`${what} option images (${present.length}) too small: class ${missing} appears in no training image; use more images`)
  }
  const smallest = Math.min(...sizes)
  const byRarity = [...Array(classes).keys()].sort((a, b) =>
    present.filter((m) => m & (1 << a)).length - present.filter((m) => m & (1 << b)).length || a - b)
  let cover: number[] = []
  let covered = 0
  for (const c of byRarity) {
    if (covered & (1 << c)) continue
    const i = order.find((j) => present[j]! & (1 << c))!
    cover.push(i)
    covered |= present[i]!
  }
  if (cover.length > smallest) {
    cover = []
    covered = 0
    while (covered !== all) {
      let best = -1, gain = 0
      for (const j of order) {
        const g = popcount(present[j]! & ~covered)
        if (g > gain) { gain = g; best = j }
      }
      cover.push(best)
      covered |= present[best]!
    }
    if (cover.length > smallest) {
      throw new RangeError(`${what} option labeled (${smallest}) too small: covering all ${classes} classes needs ${cover.length} labeled images with seed ${seed}`)
    }
  }
  const inCover = new Set(cover)
  const ranked = [...cover, ...order.filter((j) => !inCover.has(j))]
  return sizes.map((n) => ranked.slice(0, n).sort((a, b) => a - b))
}

function popcount(m: number): number {
  let c = 0
  for (; m; m &= m - 1) c++
  return c
}
