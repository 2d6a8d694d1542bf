// Checkpoints: a directory with the worker's state (worker.safetensors; with several ranks one
// file per rank, worker.rank<r>.safetensors), the driver's state (driver.json), the resolved configuration and the
// data's fingerprint (dataset.json), plus manifest.json written last. A directory without a valid
// manifest is not a checkpoint, so a crash mid-save never leaves one that looks whole.
//
// A save writes `<name>.tmp` (every file fsynced, then the directory), moves `<name>` aside to
// `<name>.old`, renames `<name>.tmp` to `<name>` and removes `<name>.old`, fsyncing the parent
// after each rename. At every instant one of the three is a whole checkpoint, and newestCheckpoint
// looks at all of them (for `latest` and `best`): a kill anywhere in a save never leaves a run
// that cannot resume. Files are hashed as streams, so a large checkpoint never blocks the event
// loop for long (a healthy worker's heartbeat keeps being answered).
import { createHash } from 'node:crypto'
import { closeSync, createReadStream, existsSync, openSync, readFileSync, readSync } from 'node:fs'
import { mkdir, open, readFile, rename, rm, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
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

/** What a resumed run must match (ts/experiment/resume.ts computes and compares it). */
export interface RunIdentity {
  /** sha256 of the resolved configuration (canonical JSON: keys sorted). */
  config_sha256: string
  /** Each split file: its path, the sha256 of its bytes and of the sample ids it resolves to. */
  splits: Record<'labeled' | 'unlabeled' | 'val', { path: string; sha256: string; samples_sha256: string; samples: number }>
  /** Every listed image and label file's size and modification time, relative to data.root. */
  dataset: { files: number; bytes: number; sha256: string }
}

/** dataset.json: the per-file list behind RunIdentity.dataset, to name the files that changed. */
export type DatasetEntries = Array<[file: string, size: number, mtimeMs: number]>

const FORMAT = 'prcl-checkpoint/1'
const FILES = ['driver.json', 'config.json'] as const
const DATASET = 'dataset.json'
const CHUNK = 1 << 20

/** The worker state files of a world of `size` ranks, in rank order. */
export function workerFileNames(size: number): string[] {
  return size === 1 ? ['worker.safetensors'] : Array.from({ length: size }, (_, r) => `worker.rank${r}.safetensors`)
}

/** sha256 of a file, read as a stream in 1 MiB chunks (the event loop runs between chunks). */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256')
    createReadStream(path, { highWaterMark: CHUNK })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolvePromise(hash.digest('hex')))
  })
}

/** Write a file and fsync it before returning. */
export async function writeDurable(path: string, data: string | Uint8Array): Promise<void> {
  const fh = await open(path, 'w')
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** fsync a file or a directory (a directory's entries: creations, renames). Where a platform
 *  cannot fsync a directory (Windows), that part is skipped. */
export async function syncPath(path: string): Promise<void> {
  let fh
  try {
    fh = await open(path, 'r')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EISDIR' || (e as NodeJS.ErrnoException).code === 'EPERM') return
    throw e
  }
  try {
    await fh.sync()
  } catch (e) {
    if (!['EINVAL', 'EPERM', 'EISDIR', 'EBADF'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e
  } finally {
    await fh.close()
  }
}

/** Remove a checkpoint directory, its manifest first: a removal cut short leaves a directory that
 *  is plainly incomplete, not one that looks whole with files missing. */
async function discard(dir: string): Promise<void> {
  await unlink(join(dir, 'manifest.json')).catch(() => undefined)
  await rm(dir, { recursive: true, force: true })
}

/** The group's part of a save: every rank writes its state to the path it is given. */
export type SavingGroup = Pick<WorkerGroup, 'size' | 'all'>

/** Every rank saves its own state (ranks differ where they keep state of their own: RNG, the
 *  BatchNorm buffers that are not synchronised), then the driver's files and the manifest. */
export async function saveCheckpoint(
  dir: string, group: SavingGroup, state: DriverState, config: ExperimentConfig,
  identity?: { identity: RunIdentity; entries: DatasetEntries },
): Promise<string> {
  const parent = dirname(dir)
  const tmp = `${dir}.tmp`
  const old = `${dir}.old`
  await mkdir(parent, { recursive: true })
  // Killed between the two renames of an earlier save: `dir` is gone and `tmp` (newer) or `old`
  // holds the whole checkpoint. Put it back in place before `tmp` is reused.
  if (!existsSync(dir)) {
    for (const candidate of [tmp, old]) {
      if (!existsSync(join(candidate, 'manifest.json'))) continue
      try {
        await verifyCheckpoint(candidate)
      } catch {
        continue
      }
      await rename(candidate, dir)
      await syncPath(parent)
      break
    }
  }
  await discard(tmp)
  await mkdir(tmp)
  const workers = workerFileNames(group.size)
  await group.all('save', (r) => ({ path: join(tmp, workers[r]!) }), { timeoutMs: 600_000 })
  await writeDurable(join(tmp, 'driver.json'), JSON.stringify(state))
  await writeDurable(join(tmp, 'config.json'), JSON.stringify(config, null, 2))
  if (identity) await writeDurable(join(tmp, DATASET), JSON.stringify(identity.entries))
  const files = [...workers, ...FILES, ...(identity ? [DATASET] : [])]
  const hashes: Record<string, string> = {}
  for (const f of files) {
    // The worker fsyncs its own file; once more here costs nothing and covers any worker.
    if (workers.includes(f)) await syncPath(join(tmp, f))
    hashes[f] = await sha256File(join(tmp, f))
  }
  const manifest = {
    format: FORMAT, step: state.step, epoch: state.epoch, world_size: group.size, workers,
    files: hashes, ...(identity ? { identity: identity.identity } : {}),
  }
  // Renamed into place, so a kill mid-write leaves no torn manifest (which would look corrupt).
  await writeDurable(join(tmp, 'manifest.json.part'), JSON.stringify(manifest, null, 2))
  await rename(join(tmp, 'manifest.json.part'), join(tmp, 'manifest.json'))
  await syncPath(tmp)
  await discard(old)
  if (existsSync(dir)) {
    await rename(dir, old)
    await syncPath(parent)
  }
  await rename(tmp, dir)
  await syncPath(parent)
  await discard(old)
  await syncPath(parent)
  return dir
}

export interface LoadedCheckpoint {
  dir: string; state: DriverState; config: ExperimentConfig
  /** Rank 0's state file (the only one of a single-worker run). */
  workerFile: string
  /** Every rank's state file, in rank order: as many as ranks saved the checkpoint. */
  workerFiles: string[]
  /** What the run must match to resume from it; absent in checkpoints written before it was kept. */
  identity: RunIdentity | null
  /** The per-file data fingerprint (dataset.json), when the checkpoint has one. */
  datasetFile: string | null
}

interface Manifest { workers: string[]; hashes: Record<string, string>; names: string[]; identity: RunIdentity | null; hasDataset: boolean }

function parseManifest(dir: string, text: string): Manifest {
  const mpath = join(dir, 'manifest.json')
  let manifest: { format?: unknown; files?: unknown; workers?: unknown; identity?: unknown }
  try {
    manifest = JSON.parse(text)
  } catch (e) {
    throw new Error(`${mpath}: not readable JSON (${(e as Error).message})`, { cause: e })
  }
  if (!manifest || typeof manifest !== 'object') throw new Error(`${mpath}: not a checkpoint manifest`)
  if (manifest.format !== FORMAT) throw new Error(`${mpath}: unknown checkpoint format ${JSON.stringify(manifest.format)}`)
  // Manifests older than per-rank files list none: theirs is worker.pt (the earlier state format).
  const workers = manifest.workers ?? ['worker.pt']
  if (!Array.isArray(workers) || workers.length === 0 || workers.some((f) => typeof f !== 'string' || !/^worker(\.rank\d+)?\.(safetensors|pt)$/.test(f))) {
    throw new Error(`${mpath}: bad list of worker files ${JSON.stringify(workers)}`)
  }
  const files = manifest.files
  if (!files || typeof files !== 'object' || Array.isArray(files)) throw new Error(`${mpath}: no file hashes`)
  const hashes = files as Record<string, string>
  const hasDataset = DATASET in hashes
  const names = [...(workers as string[]), ...FILES, ...(hasDataset ? [DATASET] : [])]
  for (const f of names) if (typeof hashes[f] !== 'string') throw new Error(`${mpath}: no hash for ${f}`)
  return { workers: workers as string[], hashes, names, identity: (manifest.identity as RunIdentity | undefined) ?? null, hasDataset }
}

function checkFile(dir: string, f: string, m: Manifest, hash: string | null): void {
  if (hash === null) throw new Error(`${dir}: ${f} is missing`)
  if (hash !== m.hashes[f]) throw new Error(`${dir}: ${f} does not match its manifest hash (corrupt or changed)`)
}

function loaded(dir: string, m: Manifest, driver: string, config: string): LoadedCheckpoint {
  const json = (f: string, text: string) => {
    try {
      return JSON.parse(text)
    } catch (e) {
      throw new Error(`${dir}: ${f} is not readable JSON (${(e as Error).message})`, { cause: e })
    }
  }
  const state = json('driver.json', driver) as DriverState
  if (!state || typeof state.step !== 'number') throw new Error(`${dir}: driver.json holds no step`)
  return {
    dir, state, config: json('config.json', config),
    workerFile: join(dir, m.workers[0]!), workerFiles: m.workers.map((f) => join(dir, f)),
    identity: m.identity, datasetFile: m.hasDataset ? join(dir, DATASET) : null,
  }
}

function noManifest(dir: string): Error {
  return new Error(`${dir} is not a complete checkpoint (no manifest.json)`)
}

/** Read and verify a checkpoint directory (its manifest and every file's hash, hashed as streams);
 *  throws naming what is wrong. */
export async function verifyCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const text = await readFile(join(dir, 'manifest.json'), 'utf8').catch(() => null)
  if (text === null) throw noManifest(dir)
  const m = parseManifest(dir, text)
  for (const f of m.names) checkFile(dir, f, m, await sha256File(join(dir, f)).catch(() => null))
  return loaded(dir, m, await readFile(join(dir, 'driver.json'), 'utf8'), await readFile(join(dir, 'config.json'), 'utf8'))
}

/** sha256 of a file read synchronously in 1 MiB chunks, or null when it cannot be read. */
function sha256FileSync(path: string): string | null {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch {
    return null
  }
  try {
    const hash = createHash('sha256')
    const buf = Buffer.allocUnsafe(CHUNK)
    for (let n; (n = readSync(fd, buf, 0, CHUNK, null)) > 0;) hash.update(buf.subarray(0, n))
    return hash.digest('hex')
  } finally {
    closeSync(fd)
  }
}

/** verifyCheckpoint, synchronously. It blocks the event loop while it hashes (about 1 s per GB):
 *  where a worker is running, use verifyCheckpoint. */
export function readCheckpoint(dir: string): LoadedCheckpoint {
  const mpath = join(dir, 'manifest.json')
  if (!existsSync(mpath)) throw noManifest(dir)
  const m = parseManifest(dir, readFileSync(mpath, 'utf8'))
  for (const f of m.names) checkFile(dir, f, m, sha256FileSync(join(dir, f)))
  return loaded(dir, m, readFileSync(join(dir, 'driver.json'), 'utf8'), readFileSync(join(dir, 'config.json'), 'utf8'))
}

/** Where newestCheckpoint looks, in order of preference at equal steps. */
export function checkpointCandidates(runDir: string): string[] {
  const base = join(runDir, 'checkpoints')
  return ['latest', 'best'].flatMap((n) => [n, `${n}.tmp`, `${n}.old`]).map((n) => join(base, n))
}

/** The run's newest valid checkpoint among `latest`, `best` and what an interrupted save left
 *  (`*.tmp`, `*.old`), or null. A corrupt one (bad manifest, missing file, hash mismatch) is
 *  skipped with a warning that names it; an incomplete leftover of an interrupted save (no
 *  manifest) is skipped quietly. Hashes as streams, so a running worker's heartbeat is answered. */
export async function newestCheckpoint(runDir: string, warn: (line: string) => void = () => undefined): Promise<LoadedCheckpoint | null> {
  const found: LoadedCheckpoint[] = []
  for (const dir of present(runDir, warn)) {
    try {
      found.push(await verifyCheckpoint(dir))
    } catch (e) {
      warn(`warning: skipped checkpoint ${dir}: ${(e as Error).message}`)
    }
  }
  return newest(found)
}

/** The candidates that exist and have a manifest. */
function present(runDir: string, warn: (line: string) => void): string[] {
  return checkpointCandidates(runDir).filter((dir) => {
    if (!existsSync(dir)) return false
    if (existsSync(join(dir, 'manifest.json'))) return true
    if (!/\.(tmp|old)$/.test(dir)) warn(`warning: skipped checkpoint ${dir}: no manifest.json (incomplete)`)
    return false
  })
}

/** The highest step; at equal steps the order of checkpointCandidates decides (a stable sort). */
function newest(found: LoadedCheckpoint[]): LoadedCheckpoint | null {
  return found.sort((a, b) => b.state.step - a.state.step)[0] ?? null
}
