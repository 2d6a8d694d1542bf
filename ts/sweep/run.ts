// `prcl sweep`: a grid of settings × seeds as one call. Each run is an ordinary run directory,
// `<out>/<cell>-seed<k>`, so a sweep run again keeps the runs that finished, resumes (exactly,
// from their newest checkpoint) those that were interrupted, and starts the rest. Runs go
// `parallel` at a time: on a GPU box one per device (`devices`), on a CPU the cores are shared
// out as torch threads. A run that fails does not stop the others; the sweep reports it.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join, resolve } from 'node:path'
import { checkConfig } from '../config/check.ts'
import { applySet, loadConfig } from '../config/load.ts'
import type { ExperimentConfig } from '../config/schema.ts'
import { configChanges, describeChange, mayAlwaysChange, normalized } from '../experiment/resume.ts'
import { Experiment, type RunSummary } from '../experiment/run.ts'
import { reportData, reportHtml } from '../report/html.ts'
import { cellsOf, type SweepAxis, type SweepCell } from './cells.ts'
import { summarize, type SweepRunResult, type SweepTable } from './table.ts'

export interface SweepOptions {
  /** A preset or a configuration file (as `prcl train --config` takes), or a configuration. */
  config: string | ExperimentConfig
  /** Overrides applied to every run, before the cell's own. */
  set?: string[]
  /** The grid: every combination of the axes' values is a cell. */
  axes: SweepAxis[]
  seeds: number[]
  /** The sweep's directory: one run directory per cell and seed, sweep.json, report.html. */
  out: string
  /** Runs at once [default 1]. */
  parallel?: number
  /** One device per parallel slot (e.g. cuda:0,cuda:1); without them a CPU's cores are shared out. */
  devices?: string[]
  /** The cell every other cell is compared with [default: each cell with each earlier one, or
   *  with the first when there are more than 4 cells]. */
  baseline?: string
  title?: string
  /** Display names of cells in the table and report (e.g. supervised → supervised-only). */
  labels?: Record<string, string>
  log?: (line: string) => void
  /** Stops the sweep: the runs in progress finish their steps in flight and checkpoint; none starts. */
  signal?: AbortSignal
  /** Called as each run starts, with its Experiment (to follow its events). */
  onRun?: (run: PlannedRun, experiment: Experiment) => void
}

/** One planned run: its cell, seed, directory and configuration. */
export interface PlannedRun {
  cell: string
  seed: number
  /** `<cell>-seed<k>`: the run's name and directory name. */
  name: string
  dir: string
  config: ExperimentConfig
  /** Every override after the base configuration, in order (what `prcl train --set` would take). */
  set: string[]
  state: 'finished' | 'interrupted' | 'new'
}

export interface SweepResult extends SweepTable {
  out: string
  title: string
  seeds: number[]
  runs: SweepRunResult[]
  /** Runs that failed, with the error. */
  failed: Array<{ name: string; run_dir: string; error: string }>
  /** Why the sweep stopped early (a signal), or null. */
  stopped: string | null
  minutes: number
  /** The HTML report of every finished run, the paired comparison on top (null: no run finished). */
  report: string | null
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/

/** Every run of the sweep, its configuration checked and its state on disk read; nothing runs.
 *  Throws, before any run starts, on a grid value the configuration check refuses, or on a run
 *  directory that holds a run of another configuration. */
export function planSweep(o: SweepOptions): PlannedRun[] {
  if (o.seeds.length === 0) throw new RangeError('a sweep needs at least one seed')
  if (new Set(o.seeds).size !== o.seeds.length) throw new RangeError(`--seeds ${o.seeds.join(',')} names a seed twice`)
  const cells = cellsOf(o.axes)
  if (o.baseline !== undefined && !cells.some((c) => c.name === o.baseline)) {
    throw new RangeError(`--baseline ${o.baseline}: no such cell; the cells are ${cells.map((c) => c.name).join(', ')}`)
  }
  const out = resolve(o.out)
  return cells.flatMap((cell) => o.seeds.map((seed) => {
    const name = `${cell.name}-seed${seed}`
    if (!NAME.test(name)) throw new RangeError(`the run name ${name} is too long or holds other characters than letters, digits, '.', '_', '-'`)
    const set = [...(o.set ?? []), ...cell.set, `seed=${seed}`, `name=${name}`]
    const config = configure(o.config, set, `cell ${cell.name}, seed ${seed}`)
    const dir = join(out, name)
    return { cell: cell.name, seed, name, dir, config, set, state: runState(dir, config) }
  }))
}

function configure(base: string | ExperimentConfig, set: string[], what: string): ExperimentConfig {
  try {
    if (typeof base === 'string') return loadConfig(base, set)
    let c: unknown = structuredClone(base)
    for (const s of set) c = applySet(c, s)
    return checkConfig(c, 'the sweep configuration with --set')
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`, { cause: e })
  }
}

/** finished: summary.json says every step was done; interrupted: a run directory that did not
 *  finish; new: no run yet. A run directory made by another configuration is refused. */
function runState(dir: string, config: ExperimentConfig): PlannedRun['state'] {
  const saved = join(dir, 'config.json')
  if (!existsSync(saved)) return 'new'
  let was: unknown
  try { was = JSON.parse(readFileSync(saved, 'utf8')) } catch (e) {
    throw new Error(`${saved} cannot be read (${(e as Error).message}): remove ${dir} to run it again`, { cause: e })
  }
  const differ = configChanges(normalized(was), config).filter((c) => !mayAlwaysChange(c.path))
  if (differ.length) {
    throw new Error(`${dir} holds a run of another configuration (${differ.slice(0, 4).map(describeChange).join('; ')}${differ.length > 4 ? `; ${differ.length - 4} more` : ''}): ` +
      'choose another --out for this sweep, or remove that run directory')
  }
  const summary = readJson(join(dir, 'summary.json')) as Partial<RunSummary> | null
  if (!summary) return 'interrupted'
  // Summaries written before `finished` existed: not stopped, and as many epochs as configured.
  const finished = summary.finished ?? (summary.stopped === null && (summary.epochs ?? 0) >= config.sampling.epochs)
  return finished ? 'finished' : 'interrupted'
}

/** Runs the sweep (see the top of this file) and writes `<out>/sweep.json` (every number). */
export async function runSweep(o: SweepOptions): Promise<SweepResult> {
  const t0 = Date.now()
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`))
  const plan = planSweep(o)
  const out = resolve(o.out)
  mkdirSync(out, { recursive: true })
  const parallel = Math.max(1, o.parallel ?? 1)
  const todo = plan.filter((r) => r.state !== 'finished')
  const kept = plan.length - todo.length
  log(`sweep: ${plan.length} runs (${new Set(plan.map((r) => r.cell)).size} cells × ${o.seeds.length} seeds) in ${out}` +
    `${kept ? `; ${kept} finished already, kept` : ''}${todo.some((r) => r.state === 'interrupted') ? `; ${todo.filter((r) => r.state === 'interrupted').length} to resume` : ''}`)
  const results = new Map<string, SweepRunResult>()
  const failed: SweepResult['failed'] = []
  for (const r of plan) if (r.state === 'finished') results.set(r.name, resultOf(r, readJson(join(r.dir, 'summary.json')) as RunSummary, 'kept'))
  const running = new Set<Experiment>()
  let stopped: string | null = null
  const onAbort = () => {
    stopped = String(o.signal?.reason ?? 'stopped')
    for (const e of running) e.stop(stopped)
  }
  o.signal?.addEventListener('abort', onAbort, { once: true })
  if (o.signal?.aborted) onAbort()
  let next = 0
  const slot = async (i: number) => {
    for (let r = todo[next++]; r !== undefined && stopped === null; r = todo[next++]) {
      const cfg = onSlot(r.config, i, parallel, o.devices)
      const resume = r.state === 'interrupted'
      const exp = new Experiment(cfg, { runDir: r.dir, resume, progress: false, log: (l) => log(`[${r.name}] ${l}`) })
      running.add(exp)
      o.onRun?.(r, exp)
      if (stopped !== null) exp.stop(stopped)
      const start = Date.now()
      log(`[${r.name}] ${resume ? 'resuming' : 'starting'}${cfg.worker.threads !== r.config.worker.threads ? ` (${cfg.worker.threads} threads)` : ''}${cfg.worker.device !== r.config.worker.device ? ` on ${cfg.worker.device}` : ''}`)
      try {
        const summary = await exp.run()
        if (summary.finished) {
          const res = resultOf(r, summary, resume ? 'resumed' : 'new')
          results.set(r.name, res)
          log(`[${r.name}] done: last mIoU ${pct(res.last_miou)}, best ${pct(res.best_miou)} in ${((Date.now() - start) / 60_000).toFixed(1)} min`)
        } else log(`[${r.name}] stopped after step ${summary.steps}: run the sweep again to resume it`)
      } catch (e) {
        const error = (e as Error).message ?? String(e)
        failed.push({ name: r.name, run_dir: r.dir, error })
        log(`[${r.name}] failed: ${error}`)
      } finally {
        running.delete(exp)
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, Math.max(1, todo.length)) }, (_, i) => slot(i)))
  } finally {
    o.signal?.removeEventListener('abort', onAbort)
  }
  const runs = plan.map((r) => results.get(r.name)).filter((r): r is SweepRunResult => r !== undefined)
  const title = o.title ?? `prcl sweep: ${[...new Set(plan.map((r) => r.cell))].join(', ')}; seeds ${o.seeds.join(', ')}`
  const table = summarize(runs, [...new Set(plan.map((r) => r.cell))], o.baseline)
  let report: string | null = null
  if (runs.length) {
    report = join(out, 'report.html')
    writeFileSync(report, reportHtml(reportData(runs.map((r) => r.run_dir), title, { seeds: o.seeds, labels: o.labels ?? {}, ...table })))
  }
  const result: SweepResult = { out, title, seeds: o.seeds, ...table, runs, failed, stopped, minutes: (Date.now() - t0) / 60_000, report }
  writeFileSync(join(out, 'sweep.json'), JSON.stringify(result, null, 2) + '\n')
  return result
}

/** The run's configuration on parallel slot i: its device, or a share of the CPU's cores. */
function onSlot(cfg: ExperimentConfig, i: number, parallel: number, devices?: string[]): ExperimentConfig {
  const c = structuredClone(cfg)
  if (devices?.length) c.worker.device = devices[i % devices.length]!
  else if (parallel > 1 && c.worker.threads === null) c.worker.threads = Math.max(1, Math.floor(availableParallelism() / parallel))
  return c
}

function resultOf(r: PlannedRun, s: RunSummary, status: SweepRunResult['status']): SweepRunResult {
  return {
    cell: r.cell, seed: r.seed, name: r.name, run_dir: r.dir, status,
    last_miou: s.last?.miou ?? NaN, best_miou: s.best?.miou ?? NaN, best_epoch: s.best?.epoch ?? null,
    steps: s.steps, minutes: s.wall_minutes,
  }
}

/** One `prcl train` command per run that is not finished (a cluster's job array): new runs with
 *  their configuration, interrupted ones with --resume. */
export function sweepCommands(o: SweepOptions): string[] {
  if (typeof o.config !== 'string') throw new RangeError('printing commands needs a preset or configuration file, not a configuration object')
  return planSweep(o).filter((r) => r.state !== 'finished').map((r) => r.state === 'interrupted'
    ? `prcl train --resume ${shellQuote(r.dir)}`
    : ['prcl train --config', shellQuote(o.config as string), ...r.set.map((s) => `--set ${shellQuote(s)}`), `--run-dir ${shellQuote(r.dir)}`].join(' '))
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=,+@%-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

const pct = (x: number) => (Number.isFinite(x) ? (x * 100).toFixed(2) : '—')

function readJson(path: string): unknown {
  try { return JSON.parse(readFileSync(path, 'utf8')) } catch { return null }
}

export type { SweepAxis, SweepCell }
