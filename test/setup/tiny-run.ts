// The tiny synthetic run the experiment suites train: 24 images of 40², 8 labeled, 32² crops,
// batches of 2, 2 epochs of 4 steps, a checkpoint every 3 steps.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../../ts/config/load.ts'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { generateSynthetic } from '../../ts/data/synth.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { attachShared } from './attach.ts'

/** A fresh temporary directory holding the tiny dataset in `data/`. */
export async function tinyDataset(prefix: string): Promise<{ dir: string; data: string }> {
  const dir = mkdtempSync(join(tmpdir(), `prcl-${prefix}-`))
  const data = join(dir, 'data')
  await generateSynthetic({ out: data, seed: 0, images: 24, val: 6, size: 40, labeled: 8 })
  return { dir, data }
}

/** The shared worker and a fresh tiny dataset, made together (a suite's beforeAll). */
export async function sharedTinyRun(prefix: string): Promise<{ worker: Worker; dir: string; data: string }> {
  const [worker, tiny] = await Promise.all([attachShared(), tinyDataset(prefix)])
  return { worker, ...tiny }
}

/** Undo sharedTinyRun (a suite's afterAll); either part may be missing after a failed start. */
export async function closeTinyRun(run: { worker?: Worker; dir?: string }): Promise<void> {
  await run.worker?.close()
  if (run.dir) rmSync(run.dir, { recursive: true, force: true })
}

/** The tiny run's overrides of the synthetic-demo preset, on the dataset at `root`. */
export function tinySets(root: string): string[] {
  return [
    `data.root=${root}`, 'data.splits.labeled=splits/8/0/labeled_filename.txt', 'data.splits.unlabeled=splits/8/0/unlabeled_filename.txt',
    'data.splits.val=splits/8/0/valid_filename.txt', 'data.labeled.crop=[32,32]', 'data.unlabeled.crop=[32,32]',
    'sampling.batch_size=2', 'sampling.epochs=2', 'sampling.epoch={"kind":"fixed","steps":4}', 'checkpoint.every_steps=3',
  ]
}

/** The tiny run's configuration on the dataset at `root`; `sets` come last and win. */
export function tinyConfig(root: string, name: string, sets: string[] = []): ExperimentConfig {
  return loadConfig('synthetic-demo', [...tinySets(root), `name=${name}`, ...sets])
}
