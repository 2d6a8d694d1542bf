// An experiment: the training loop, evaluation, checkpoints, resume and the run directory.
// The loop is pipelined: step n+1's bytes and parameters are read and on the wire (K = 2) while
// the worker computes step n.
import { EventEmitter } from 'node:events'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { checkConfig } from '../config/check.ts'
import type { ExperimentConfig } from '../config/schema.ts'
import { planStep, type Generators, type PlanData, type StepPlan } from '../policy/plan.ts'
import { progressAt, stepsPerEpoch } from '../policy/progress.ts'
import type { OpResult } from '../wire/ops/index.ts'
import { Worker } from '../worker/worker.ts'
import { findCheckpoint, readCheckpoint, saveCheckpoint, type DriverState } from './checkpoint.ts'
import { loadRunData, type RunData } from './data.ts'
import { evaluateOn, type EvalEvent } from './evaluate.ts'
import { generators, initialState, snapshotOf } from './generators.ts'
import { appendLine, evalsFromMetrics, progressLine, stepEvent, type StepEvent } from './metrics-log.ts'
import { Pipeline } from './pipeline.ts'
import { Recorder } from './record.ts'
import { workerSettings } from './settings.ts'

export interface RunOptions {
  /** The run directory; default runs_dir/<name>-<time>. */
  runDir?: string
  /** Continue the run in runDir from its newest checkpoint. */
  resume?: boolean
  /** Stop after this many steps in this invocation (tests use it to interrupt a run). */
  stopAfter?: number
  /** Reuse a running worker (the REPL, tests); otherwise one is started and closed. */
  worker?: Worker
  /** Print a progress line to stderr (default: when stderr is a TTY). */
  progress?: boolean
  log?: (line: string) => void
  /** Record every worker request to this file, for an in-process replay (python -m prcl_worker.replay). */
  record?: string
}

export interface RunSummary {
  name: string
  run_dir: string
  steps: number
  epochs: number
  wall_minutes: number
  last: EvalEvent | null
  best: EvalEvent | null
  splits: RunData['splits']
  config_sha: string
  /** Samples left out because they could not be read (data.skip_bad_samples), with the reason. */
  skipped: Array<{ file: string; reason: string }>
}

export class Experiment extends EventEmitter {
  readonly runDir: string
  private cfg: ExperimentConfig
  private opts: RunOptions

  constructor(cfg: ExperimentConfig, opts: RunOptions = {}) {
    super()
    this.opts = opts
    if (opts.resume) {
      if (!opts.runDir) throw new Error('resume needs the run directory')
      const saved = join(opts.runDir, 'config.json')
      if (!existsSync(saved)) throw new Error(`${opts.runDir} is not a run directory (no config.json)`)
      this.cfg = checkConfig(JSON.parse(readFileSync(saved, 'utf8')), saved)
    } else {
      // Checked here, before a run directory or a worker exists.
      this.cfg = checkConfig(cfg)
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)
    this.runDir = resolve(opts.runDir ?? join(this.cfg.runs_dir, `${this.cfg.name}-${stamp}`))
  }

  get config(): ExperimentConfig { return this.cfg }

  /** plan → read bytes → send → record → evaluate/checkpoint when the plan says; the next step
   *  is planned and on the wire while the worker computes this one. */
  async run(): Promise<RunSummary> {
    const cfg = this.cfg
    const data = await loadRunData(cfg)
    mkdirSync(join(this.runDir, 'checkpoints'), { recursive: true })
    if (!this.opts.resume) writeFileSync(join(this.runDir, 'config.json'), JSON.stringify(cfg, null, 2))
    writeFileSync(join(this.runDir, 'splits.json'), JSON.stringify(data.splits, null, 2))
    const worker = this.opts.worker ?? await Worker.start({ python: cfg.worker.python ?? undefined, device: cfg.worker.device, transport: cfg.worker.transport, log: 'silent' })
    const recorder = this.opts.record ? new Recorder(this.opts.record) : null
    try {
      const run = await this.start(worker, data, recorder)
      const pipe = new Pipeline(worker, data, recorder, (plan, result) => this.stepDone(run, plan, result))
      for (let planned = run.state.step; planned < run.stopAt; planned++) {
        const plan = planStep(cfg, progressAt(cfg, run.perEpoch, planned), run.gen, run.planData)
        const snapshot = snapshotOf(plan, run.perEpoch, run.gen, run.state.best)
        await pipe.send(plan)
        const checkpoint = plan.checkpoint || plan.step === run.stopAt
        // Evaluations and checkpoints see the state after exactly this step: drain the pipeline.
        await pipe.drain(plan.evaluate || checkpoint ? 0 : 1)
        if (plan.evaluate) await this.evaluate(run, plan.step, snapshot)
        if (checkpoint) await this.save(run, 'latest', snapshot)
      }
      await pipe.drain(0)
      return this.summarize(run)
    } finally {
      recorder?.close()
      if (!this.opts.worker) await worker.close()
    }
  }

  /** Configure the worker, and restore the newest checkpoint when resuming. */
  private async start(worker: Worker, data: RunData, recorder: Recorder | null): Promise<RunState> {
    const cfg = this.cfg
    recorder?.write('configure', workerSettings(cfg))
    await worker.call('configure', workerSettings(cfg), { timeoutMs: 600_000 })
    let state = initialState(cfg, data)
    const ck = this.opts.resume ? findCheckpoint(this.runDir) : null
    if (ck) {
      await worker.call('load', { path: ck.workerFile }, { timeoutMs: 600_000 })
      state = ck.state
      this.log(`resumed ${this.runDir} at step ${state.step} (epoch ${state.epoch}) from ${ck.dir}`)
    }
    const perEpoch = stepsPerEpoch(cfg, data.labeled.length)
    const total = perEpoch * cfg.sampling.epochs
    return {
      worker, data, state, perEpoch, total, gen: generators(cfg, data, state),
      stopAt: this.opts.stopAfter === undefined ? total : Math.min(total, state.step + this.opts.stopAfter),
      planData: { ...data.sizes, labelLut: data.dataset.labelLut },
      metrics: join(this.runDir, 'metrics.jsonl'), started: Date.now(), firstStep: state.step, done: state.step, best: null, last: null,
    }
  }

  private stepDone(run: RunState, plan: StepPlan, result: OpResult<'train_step'>): void {
    const ev = stepEvent(plan, result)
    appendLine(run.metrics, ev)
    this.emit('step', ev)
    run.done = plan.step
    if (this.opts.progress ?? process.stderr.isTTY) progressLine(plan.step, run.total, run.started, run.firstStep, ev)
  }

  private async evaluate(run: RunState, step: number, snapshot: DriverState): Promise<void> {
    const ev = await evaluateOn(run.worker, this.cfg, run.data, step, snapshot.epoch)
    run.last = ev
    appendLine(run.metrics, ev)
    this.emit('eval', ev)
    if (!run.state.best || ev.miou > run.state.best.miou) {
      run.state.best = { miou: ev.miou, step, epoch: ev.epoch }
      run.best = ev
      await this.save(run, 'best', snapshot)
    }
    const best = run.state.best
    this.log(`epoch ${ev.epoch} step ${step}: ${ev.model} mIoU ${(ev.miou * 100).toFixed(2)} (best ${(best.miou * 100).toFixed(2)} at epoch ${best.epoch})`)
  }

  private save(run: RunState, name: 'latest' | 'best', snapshot: DriverState): Promise<string> {
    return saveCheckpoint(join(this.runDir, 'checkpoints', name), run.worker, { ...snapshot, best: run.state.best, wall_ms: this.wallMs(run) }, this.cfg)
  }

  private summarize(run: RunState): RunSummary {
    if (this.opts.progress ?? process.stderr.isTTY) process.stderr.write('\n')
    const logged = evalsFromMetrics(run.metrics)
    const summary: RunSummary = {
      name: this.cfg.name, run_dir: this.runDir, steps: run.done, epochs: Math.floor(run.done / run.perEpoch),
      wall_minutes: this.wallMs(run) / 60_000, last: run.last ?? logged.last, best: run.best ?? logged.best,
      splits: run.data.splits, config_sha: sha(JSON.stringify(this.cfg)), skipped: run.data.skipped,
    }
    writeFileSync(join(this.runDir, 'summary.json'), JSON.stringify(summary, null, 2))
    return summary
  }

  private wallMs(run: RunState): number {
    return run.state.wall_ms + Date.now() - run.started
  }

  private log(line: string): void {
    ;(this.opts.log ?? ((l: string) => process.stderr.write(`${l}\n`)))(line)
  }
}

/** What one invocation of run() works with. */
interface RunState {
  worker: Worker
  data: RunData
  state: DriverState
  gen: Generators
  planData: PlanData
  perEpoch: number
  total: number
  stopAt: number
  metrics: string
  started: number
  firstStep: number
  done: number
  best: EvalEvent | null
  last: EvalEvent | null
}

function sha(text: string): string {
  // Small and dependency-free is enough for a config fingerprint.
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return (h >>> 0).toString(16).padStart(8, '0')
}

export { readCheckpoint, type EvalEvent, type StepEvent }
