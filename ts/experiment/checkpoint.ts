// Checkpoints: a directory with the worker's state (worker.pt; with several ranks one file per
// rank, worker.rank<r>.pt), the driver's state (driver.json) and the resolved configuration, plus
// manifest.json written last. A directory without a valid manifest is not a checkpoint, so a
// crash mid-save never leaves one that looks whole.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ExperimentConfig } from '../config/schema.ts'
import type { WorkerGroup } from '../worker/group.ts'
import type { SamplerState } from '../policy/sampler.ts'

export interface DriverState {
  step: number
  epoch: number
  samplers: { labeled: SamplerState; unlabeled: SamplerState }
  rng: number[]
  best: { miou: number; step: number; epoch: number } | null
  /** Per-step totals so far, so a resumed run's summary covers the whole run. */
  wall_ms: number
}

const FILES = ['driver.json', 'config.json'] as const

/** The worker state files of a world of `size` ranks, in rank order. */
export function workerFileNames(size: number): string[] {
  return size === 1 ? ['worker.pt'] : Array.from({ length: size }, (_, r) => `worker.rank${r}.pt`)
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

/** Every rank saves its own state (ranks differ where they keep state of their own: RNG, the
 *  BatchNorm buffers that are not synchronised), then the driver's files and the manifest. */
export async function saveCheckpoint(dir: string, group: WorkerGroup, state: DriverState, config: ExperimentConfig): Promise<string> {
  const tmp = `${dir}.tmp`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp, { recursive: true })
  const workers = workerFileNames(group.size)
  await group.all('save', (r) => ({ path: join(tmp, workers[r]!) }), { timeoutMs: 600_000 })
  writeFileSync(join(tmp, 'driver.json'), JSON.stringify(state))
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(config, null, 2))
  const files = [...workers, ...FILES]
  const manifest = {
    format: 'prcl-checkpoint/1', step: state.step, epoch: state.epoch, world_size: group.size, workers,
    files: Object.fromEntries(files.map((f) => [f, sha256(join(tmp, f))])),
  }
  writeFileSync(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2))
  const old = `${dir}.old`
  rmSync(old, { recursive: true, force: true })
  if (existsSync(dir)) renameSync(dir, old)
  renameSync(tmp, dir)
  rmSync(old, { recursive: true, force: true })
  return dir
}

export interface LoadedCheckpoint {
  dir: string; state: DriverState; config: ExperimentConfig
  /** Rank 0's state file (the only one of a single-worker run). */
  workerFile: string
  /** Every rank's state file, in rank order: as many as ranks saved the checkpoint. */
  workerFiles: string[]
}

/** Read and verify a checkpoint directory (its manifest and every file's hash). */
export function readCheckpoint(dir: string): LoadedCheckpoint {
  const mpath = join(dir, 'manifest.json')
  if (!existsSync(mpath)) throw new Error(`${dir} is not a complete checkpoint (no manifest.json)`)
  const manifest = JSON.parse(readFileSync(mpath, 'utf8')) as { format: string; files: Record<string, string>; workers?: string[] }
  if (manifest.format !== 'prcl-checkpoint/1') throw new Error(`${mpath}: unknown checkpoint format ${manifest.format}`)
  const workers = manifest.workers ?? workerFileNames(1)
  if (!Array.isArray(workers) || workers.length === 0 || workers.some((f) => typeof f !== 'string' || !/^worker(\.rank\d+)?\.pt$/.test(f))) {
    throw new Error(`${mpath}: bad list of worker files ${JSON.stringify(workers)}`)
  }
  for (const f of [...workers, ...FILES]) {
    const p = join(dir, f)
    if (!existsSync(p)) throw new Error(`${dir}: ${f} is missing`)
    if (sha256(p) !== manifest.files[f]) throw new Error(`${dir}: ${f} does not match its manifest hash (corrupt or changed)`)
  }
  return {
    dir,
    state: JSON.parse(readFileSync(join(dir, 'driver.json'), 'utf8')),
    config: JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')),
    workerFile: join(dir, workers[0]!),
    workerFiles: workers.map((f) => join(dir, f)),
  }
}

/** The run's loadable checkpoint with the highest step (`latest` or `best`), or null. */
export function findCheckpoint(runDir: string): LoadedCheckpoint | null {
  const found = ['latest', 'best']
    .map((name) => join(runDir, 'checkpoints', name))
    .filter((dir) => existsSync(join(dir, 'manifest.json')))
    .map(readCheckpoint)
  return found.sort((a, b) => b.state.step - a.state.step)[0] ?? null
}
