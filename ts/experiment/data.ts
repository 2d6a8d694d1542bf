// The run's data: dataset, split files (with their identity) and sample lists.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { ExperimentConfig } from '../config/schema.ts'
import { checkSamples, formatReport, isError, makeReport, type CheckLevel, type CheckReport } from '../data/check.ts'
import { checkSamplesExist, isFile, type Dataset, type SampleRef } from '../data/dataset.ts'
import { openDataset } from '../data/index.ts'
import { knownSplit, missingSplitHelp, type KnownSplit } from '../data/known-splits.ts'
import { readImageSize } from '../data/imagesize.ts'
import { readSplit, splitIdentity, type SplitIdentity } from '../data/splits.ts'
import type { ImageSize } from '../policy/plan.ts'

export interface RunData {
  dataset: Dataset
  labeled: SampleRef[]
  unlabeled: SampleRef[]
  val: SampleRef[]
  /** Each training image's size, from its header: what the step plan draws crops from. */
  sizes: { labeled: ImageSize[]; unlabeled: ImageSize[] }
  /** Training samples left out because their image could not be read (data.skip_bad_samples). */
  skipped: Array<{ file: string; reason: string }>
  /** Each split file's identity; `published` where the path is a known repository's file, with
   *  whether this copy's content is that file's. */
  splits: Record<'labeled' | 'unlabeled' | 'val', SplitIdentity & { path: string; published?: KnownSplit & { matches: boolean | null } }>
}

type ListName = 'labeled' | 'unlabeled' | 'val'
const LISTS = ['labeled', 'unlabeled', 'val'] as const

export interface LoadRunDataOptions {
  /** The data pre-flight (ts/data/check.ts) over every listed image and label before anything
   *  else: 'fast' (structure: truncation, label mode, sizes, label values), 'full' (every image
   *  decoded) or 'none' (only the training images' headers are read) [default: none]. Problems
   *  end the load with one error listing them all, or, with data.skip_bad_samples, leave their
   *  samples out (each in `skipped` with its reason). */
  check?: CheckLevel | 'none'
  /** Which lists the check covers [default: all three]; the others are read as without a check. */
  lists?: ReadonlyArray<'labeled' | 'unlabeled' | 'val'>
  /** Threads for the check (default: the cores, at most 16). */
  threads?: number
  /** Progress of the check (done, total). */
  progress?: (done: number, total: number) => void
}

/** The dataset, split files and resolved sample lists of a configuration (missing files allowed
 *  when asked: the check reports them). With `problems`, a list that cannot be read (a missing or
 *  malformed split file, …) and a class-count mismatch are collected there instead of thrown, and
 *  the list is left empty. */
async function openLists(cfg: ExperimentConfig, allowMissing: boolean, problems?: string[]) {
  if (!cfg.data.root) throw new Error('data.root is not set: pass --set data.root=/path/to/dataset (or set it in the config file)')
  const root = resolve(cfg.data.root)
  if (!existsSync(root)) throw new Error(`data.root ${root} does not exist; pass --set data.root=/path/to/dataset`)
  const dataset = openDataset(cfg.data.dataset, root)
  const splits = {} as RunData['splits']
  const refs = {} as Record<ListName, SampleRef[]>
  const lines = {} as Record<ListName, number[]>
  for (const which of LISTS) {
    try {
      const path = resolve(root, cfg.data.splits[which])
      if (!existsSync(path)) throw new Error(missingSplitHelp(which, cfg.data.splits[which], path))
      const entries = await readSplit(path)
      const id = await splitIdentity(path)
      const known = knownSplit(cfg.data.splits[which])
      splits[which] = { ...id, path, ...(known ? { published: { ...known, matches: known.sha16 ? id.sha16 === known.sha16 : null } } : {}) }
      refs[which] = dataset.resolve(entries, { needLabels: which !== 'unlabeled', subset: which === 'val' ? 'val' : 'train', splitFile: path, allowMissing } as never)
      if (which === 'unlabeled') withTruth(dataset, entries, path, refs[which])
      lines[which] = entries.map((e) => e.line)
      if (refs[which].length === 0) throw new Error(`data.splits.${which}: ${path} lists no samples`)
    } catch (e) {
      if (!problems) throw e
      problems.push((e as Error).message)
      refs[which] = []
      lines[which] = []
    }
  }
  if (dataset.numClasses !== cfg.model.num_classes) {
    const msg = `model.num_classes is ${cfg.model.num_classes} but the ${dataset.name} dataset at ${root} has ${dataset.numClasses} classes`
    if (!problems) throw new Error(msg)
    problems.push(`${msg} (label values are checked against the dataset's ${dataset.numClasses})`)
  }
  return { root, dataset, splits, refs, lines }
}

/** Give each unlabeled sample its ground truth's path when every one of them has one on disk
 *  (VOC's train_aug does): the driver may send it to measure pseudo-label quality. */
function withTruth(dataset: Dataset, entries: Parameters<Dataset['resolve']>[0], splitFile: string, refs: SampleRef[]): void {
  let labeled: SampleRef[]
  try {
    labeled = dataset.resolve(entries, { needLabels: true, subset: 'train', splitFile, allowMissing: true } as never)
  } catch {
    return // no label layout for these images (test cities, a folder without masks)
  }
  if (labeled.length !== refs.length || labeled.some((r) => !r.label || !isFile(r.label))) return
  refs.forEach((r, i) => { r.truth = labeled[i]!.label! })
}

/** A data check that found problems; `report` holds every finding. */
export class DataCheckError extends Error {
  override name = 'DataCheckError'
  constructor(message: string, readonly report: CheckReport) { super(message) }
}

/** `prcl check-data`: check every image and label a configuration lists (labeled, unlabeled and
 *  val), collecting every problem. Throws only when the lists themselves cannot be read. */
export async function checkDataConfig(cfg: ExperimentConfig, opts: { level?: CheckLevel; threads?: number; progress?: (done: number, total: number) => void } = {}) {
  const problems: string[] = []
  const { root, dataset, splits, refs, lines } = await openLists(cfg, true, problems)
  const lists = LISTS.filter((l) => refs[l].length > 0)
  const report = await checkLists(dataset, refs, lines, lists, opts.level ?? 'full', opts.threads, opts.progress)
  const head = problems.length
    ? [`${problems.length} problem${problems.length === 1 ? '' : 's'} with the configuration's lists (their samples are not checked):`, ...problems.map((p) => `  ${p}`)]
    : []
  return { root, dataset: dataset.name, splits, report, problems, ok: report.errors === 0 && problems.length === 0, text: [...head, formatReport(report, root)].join('\n') }
}

async function checkLists(dataset: Dataset, refs: Record<ListName, SampleRef[]>, lines: Record<ListName, number[]>, lists: readonly ListName[],
  level: CheckLevel, threads?: number, progress?: (done: number, total: number) => void): Promise<CheckReport & { sizes: Partial<Record<ListName, Array<ImageSize | null>>> }> {
  const all = lists.flatMap((l) => refs[l])
  const results = await checkSamples(all, { level, numClasses: dataset.numClasses, labelLut: dataset.labelLut, threads, progress })
  let at = 0
  const per = lists.map((list) => {
    const mine = results.slice(at, at + refs[list].length)
    at += refs[list].length
    return { list, refs: refs[list], lines: lines[list], results: mine }
  })
  const sizes = Object.fromEntries(per.map((p) => [p.list, p.results.map((r) => r.size)])) as Partial<Record<ListName, Array<ImageSize | null>>>
  return { ...makeReport(level, per), sizes }
}

export async function loadRunData(cfg: ExperimentConfig, opts: LoadRunDataOptions = {}): Promise<RunData> {
  const level = opts.check ?? 'none'
  const checked = new Set<ListName>(level === 'none' ? [] : opts.lists ?? LISTS)
  const skipBad = cfg.data.skip_bad_samples
  const { root, dataset, splits, refs, lines } = await openLists(cfg, skipBad || checked.size > 0)
  const skipped: RunData['skipped'] = []
  const sizes = {} as RunData['sizes']
  if (checked.size && !skipBad) {
    // Lists the check does not cover were resolved without their existence check: run it now.
    for (const which of LISTS.filter((l) => !checked.has(l))) {
      checkSamplesExist(refs[which], lines[which].map((line) => ({ id: '', line })), root, splits[which].path)
    }
  }
  if (checked.size) {
    const report = await checkLists(dataset, refs, lines, LISTS.filter((l) => checked.has(l)), level as CheckLevel, opts.threads, opts.progress)
    if (report.errors && !skipBad) {
      throw new DataCheckError(`${formatReport(report, root)}\nfix or remove these files (prcl check-data lists them all), ` +
        'or set data.skip_bad_samples=true to leave their samples out', report)
    }
    for (const which of checked) {
      const bad = new Set(report.bad[which])
      for (const f of report.findings) {
        if (f.list === which && isError(f)) skipped.push({ file: f.file, reason: `${which}${f.line ? ` line ${f.line}` : ''}: ${f.file} ${f.message}` })
      }
      const keep = refs[which].map((_, i) => i).filter((i) => !bad.has(i))
      if (which !== 'val') sizes[which] = keep.map((i) => report.sizes[which]![i]!)
      refs[which] = keep.map((i) => refs[which][i]!)
      if (refs[which].length === 0) throw new Error(`data.splits.${which}: every sample listed in ${splits[which].path} has a problem; see the skipped list`)
    }
  }
  for (const which of LISTS.filter((l) => !checked.has(l))) {
    if (skipBad) {
      // Not checked: at least leave out samples whose files are missing.
      refs[which] = refs[which].filter((r, i) => {
        const gone = [r.image, r.label].filter((p): p is string => p !== null && !isFile(p))
        for (const p of gone) skipped.push({ file: p, reason: `${which} line ${lines[which][i]}: ${p} does not exist` })
        return gone.length === 0
      })
    }
    if (which !== 'val') {
      const read = await readSizes(refs[which], skipBad, skipped)
      refs[which] = read.refs
      sizes[which] = read.sizes
    }
    if (refs[which].length === 0) throw new Error(`data.splits.${which}: no sample listed in ${splits[which].path} could be read; see the skipped list`)
  }
  return { dataset, ...refs, splits, sizes, skipped }
}

/** The images' sizes (16 headers read at a time). With skipBad an unreadable image drops its
 *  sample, recorded with the reason; otherwise its error ends the load. */
async function readSizes(refs: SampleRef[], skipBad: boolean, skipped: RunData['skipped']) {
  const sizes: Array<ImageSize | Error> = new Array(refs.length)
  let next = 0
  const lane = async () => {
    while (next < refs.length) {
      const i = next++
      try {
        sizes[i] = await readImageSize(refs[i]!.image)
      } catch (e) {
        if (!skipBad) throw e
        sizes[i] = e as Error
      }
    }
  }
  await Promise.all(Array.from({ length: 16 }, lane))
  // In list order, whatever order the reads finished in.
  sizes.forEach((s, i) => { if (s instanceof Error) skipped.push({ file: refs[i]!.image, reason: s.message }) })
  const keep = refs.map((_, i) => i).filter((i) => !(sizes[i] instanceof Error))
  return { refs: keep.map((i) => refs[i]!), sizes: keep.map((i) => sizes[i] as ImageSize) }
}
