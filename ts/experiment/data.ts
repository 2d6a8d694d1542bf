// The run's data: dataset, split files (with their identity) and sample lists.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { ExperimentConfig } from '../config/schema.ts'
import type { Dataset, SampleRef } from '../data/dataset.ts'
import { openDataset } from '../data/index.ts'
import { knownSplit, missingSplitHelp, type KnownSplit } from '../data/known-splits.ts'
import { readSplit, splitIdentity, type SplitIdentity } from '../data/splits.ts'

export interface RunData {
  dataset: Dataset
  labeled: SampleRef[]
  unlabeled: SampleRef[]
  val: SampleRef[]
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
  return { dataset, ...refs, splits }
}
