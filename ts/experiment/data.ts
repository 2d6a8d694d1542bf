// The run's data: dataset, split files (with their identity) and sample lists.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { ExperimentConfig } from '../config/schema.ts'
import type { Dataset, SampleRef } from '../data/dataset.ts'
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

export async function loadRunData(cfg: ExperimentConfig): Promise<RunData> {
  if (!cfg.data.root) throw new Error('data.root is not set: pass --set data.root=/path/to/dataset (or set it in the config file)')
  const root = resolve(cfg.data.root)
  if (!existsSync(root)) throw new Error(`data.root ${root} does not exist`)
  const dataset = openDataset(cfg.data.dataset, root)
  const splits = {} as RunData['splits']
  const refs = {} as Record<'labeled' | 'unlabeled' | 'val', SampleRef[]>
  for (const which of ['labeled', 'unlabeled', 'val'] as const) {
    const path = resolve(root, cfg.data.splits[which])
    if (!existsSync(path)) throw new Error(missingSplitHelp(which, cfg.data.splits[which], path))
    const entries = await readSplit(path)
    const id = await splitIdentity(path)
    const known = knownSplit(cfg.data.splits[which])
    splits[which] = { ...id, path, ...(known ? { published: { ...known, matches: known.sha16 ? id.sha16 === known.sha16 : null } } : {}) }
    refs[which] = dataset.resolve(entries, { needLabels: which !== 'unlabeled', subset: which === 'val' ? 'val' : 'train', splitFile: path } as never)
    if (refs[which].length === 0) throw new Error(`data.splits.${which}: ${path} lists no samples`)
  }
  if (dataset.numClasses !== cfg.model.num_classes) {
    throw new Error(`model.num_classes is ${cfg.model.num_classes} but the ${dataset.name} dataset at ${root} has ${dataset.numClasses} classes`)
  }
  const skipped: RunData['skipped'] = []
  const sizes = {} as RunData['sizes']
  for (const which of ['labeled', 'unlabeled'] as const) {
    const read = await readSizes(refs[which], cfg.data.skip_bad_samples, skipped)
    refs[which] = read.refs
    sizes[which] = read.sizes
    if (read.refs.length === 0) throw new Error(`data.splits.${which}: no image listed in ${splits[which].path} could be read; see the skipped list`)
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
