// Checkpoints: a directory with the worker's state (worker.pt), the driver's state (driver.json)
// and the resolved configuration, plus manifest.json written last. A directory without a valid
// manifest is not a checkpoint, so a crash mid-save never leaves one that looks whole.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ExperimentConfig } from '../config/schema.ts'
import type { Worker } from '../worker/worker.ts'
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

const FILES = ['worker.pt', 'driver.json', 'config.json'] as const

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

export async function saveCheckpoint(dir: string, worker: Worker, state: DriverState, config: ExperimentConfig): Promise<string> {
  const tmp = `${dir}.tmp`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp, { recursive: true })
  await worker.call('save', { path: join(tmp, 'worker.pt') }, { timeoutMs: 600_000 })
  writeFileSync(join(tmp, 'driver.json'), JSON.stringify(state))
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(config, null, 2))
  const manifest = { format: 'prcl-checkpoint/1', step: state.step, epoch: state.epoch, files: Object.fromEntries(FILES.map((f) => [f, sha256(join(tmp, f))])) }
  writeFileSync(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2))
  const old = `${dir}.old`
  rmSync(old, { recursive: true, force: true })
  if (existsSync(dir)) renameSync(dir, old)
  renameSync(tmp, dir)
  rmSync(old, { recursive: true, force: true })
  return dir
}

export interface LoadedCheckpoint { dir: string; state: DriverState; config: ExperimentConfig; workerFile: string }

/** Read and verify a checkpoint directory (its manifest and every file's hash). */
export function readCheckpoint(dir: string): LoadedCheckpoint {
  const mpath = join(dir, 'manifest.json')
  if (!existsSync(mpath)) throw new Error(`${dir} is not a complete checkpoint (no manifest.json)`)
  const manifest = JSON.parse(readFileSync(mpath, 'utf8')) as { format: string; files: Record<string, string> }
  if (manifest.format !== 'prcl-checkpoint/1') throw new Error(`${mpath}: unknown checkpoint format ${manifest.format}`)
  for (const f of FILES) {
    const p = join(dir, f)
    if (!existsSync(p)) throw new Error(`${dir}: ${f} is missing`)
    if (sha256(p) !== manifest.files[f]) throw new Error(`${dir}: ${f} does not match its manifest hash (corrupt or changed)`)
  }
  return {
    dir,
    state: JSON.parse(readFileSync(join(dir, 'driver.json'), 'utf8')),
    config: JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')),
    workerFile: join(dir, 'worker.pt'),
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
