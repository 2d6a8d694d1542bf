// An experiment: the training loop, evaluation, checkpoints, resume and the run directory.
// The loop is pipelined: step n+1's bytes and parameters are read and on the wire (K = 2) while
// the worker computes step n.
import { EventEmitter } from 'node:events'
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { checkConfig } from '../config/check.ts'
import type { ExperimentConfig } from '../config/schema.ts'
import { readSample } from '../data/dataset.ts'
import { planStep, type Generators, type StepPlan } from '../policy/plan.ts'
import { progressAt, stepsPerEpoch } from '../policy/progress.ts'
import { Sampler } from '../policy/sampler.ts'
import { Rng, STREAM } from '../rng.ts'
import type { CallResult } from '../wire/connection.ts'
import { WorkerError } from '../wire/errors.ts'
import type { OpResult } from '../wire/ops/index.ts'
import { bytesTensor, type Tensors } from '../wire/tensor.ts'
import { Worker } from '../worker/worker.ts'
import { findCheckpoint, readCheckpoint, saveCheckpoint, type DriverState } from './checkpoint.ts'
import { loadRunData, type RunData } from './data.ts'
import { evaluateOn, type EvalEvent } from './evaluate.ts'
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

/** One line of metrics.jsonl per step: what the plan resolved and what the worker measured. */
export interface StepEvent {
  type: 'step'; step: number; epoch: number; lr: number; head_lr: number; ema_decay: number; weak_threshold: number
  params: StepPlan['params']; total: number; losses: Record<string, { value: number; weight: number }>
  stats: OpResult<'train_step'>['stats']; time_ms: Record<string, number>
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
    const log = this.opts.log ?? ((l: string) => process.stderr.write(`${l}\n`))
    const data = await loadRunData(cfg)
    mkdirSync(join(this.runDir, 'checkpoints'), { recursive: true })
    if (!this.opts.resume) writeFileSync(join(this.runDir, 'config.json'), JSON.stringify(cfg, null, 2))
    writeFileSync(join(this.runDir, 'splits.json'), JSON.stringify(data.splits, null, 2))
    const worker = this.opts.worker ?? await Worker.start({ python: cfg.worker.python ?? undefined, device: cfg.worker.device, transport: cfg.worker.transport, log: 'silent' })
    const started = Date.now()
    const recorder = this.opts.record ? new Recorder(this.opts.record) : null
    try {
      recorder?.write('configure', workerSettings(cfg))
      await worker.call('configure', workerSettings(cfg), { timeoutMs: 600_000 })
      const perEpoch = stepsPerEpoch(cfg, data.labeled.length)
      const total = perEpoch * cfg.sampling.epochs
      let state = initialState(cfg, data)
      if (this.opts.resume) {
        const ck = findCheckpoint(this.runDir)
        if (ck) {
          await worker.call('load', { path: ck.workerFile }, { timeoutMs: 600_000 })
          state = ck.state
          log(`resumed ${this.runDir} at step ${state.step} (epoch ${state.epoch}) from ${ck.dir}`)
        }
      }
      const gen = generators(cfg, data, state)
      const planData = { ...data.sizes, labelLut: data.dataset.labelLut }
      const metrics = join(this.runDir, 'metrics.jsonl')
      const stopAt = this.opts.stopAfter === undefined ? total : Math.min(total, state.step + this.opts.stopAfter)
      const inflight: Array<{ plan: StepPlan; reply: Promise<CallResult<OpResult<'train_step'>>> }> = []
      const showProgress = this.opts.progress ?? process.stderr.isTTY
      const t0 = Date.now()
      const firstStep = state.step
      let done = state.step
      let best: EvalEvent | null = null
      let last: EvalEvent | null = null
      const finish = async () => {
        const { plan, reply } = inflight.shift()!
        const ev = stepEvent(plan, (await reply).body)
        appendFileSync(metrics, JSON.stringify(ev) + '\n')
        this.emit('step', ev)
        done = plan.step
        if (showProgress) progressLine(plan.step, total, t0, firstStep, ev)
      }
      const save = (name: string, snapshot: DriverState) => saveCheckpoint(join(this.runDir, 'checkpoints', name), worker,
        { ...snapshot, best: state.best, wall_ms: state.wall_ms + Date.now() - started }, cfg)

      for (let planned = state.step; planned < stopAt; planned++) {
        const plan = planStep(cfg, progressAt(cfg, perEpoch, planned), gen, planData)
        const snapshot = snapshotOf(plan, perEpoch, gen, state)
        const { tensors, files } = await readStep(plan, data)
        recorder?.write('train_step', plan, tensors)
        const reply = worker.call('train_step', plan, { tensors, timeoutMs: 3_600_000 }).catch((e) => { throw nameFile(e, files) })
        reply.catch(() => undefined) // awaited in order below; this keeps an early failure from being "unhandled"
        inflight.push({ plan, reply })
        const checkpoint = plan.checkpoint || plan.step === stopAt
        // Evaluations and checkpoints see the state after exactly this step: drain the pipeline.
        while (inflight.length > (plan.evaluate || checkpoint ? 0 : 1)) await finish()
        if (plan.evaluate) {
          last = await evaluateOn(worker, cfg, data, plan.step, snapshot.epoch)
          appendFileSync(metrics, JSON.stringify(last) + '\n')
          this.emit('eval', last)
          if (!state.best || last.miou > state.best.miou) {
            state.best = { miou: last.miou, step: plan.step, epoch: last.epoch }
            best = last
            await save('best', snapshot)
          }
          log(`epoch ${last.epoch} step ${plan.step}: ${last.model} mIoU ${(last.miou * 100).toFixed(2)} (best ${(state.best.miou * 100).toFixed(2)} at epoch ${state.best.epoch})`)
        }
        if (checkpoint) await save('latest', snapshot)
      }
      while (inflight.length) await finish()
      if (showProgress) process.stderr.write('\n')
      best ??= bestFromMetrics(metrics)
      last ??= lastFromMetrics(metrics)
      const summary: RunSummary = {
        name: cfg.name, run_dir: this.runDir, steps: done, epochs: Math.floor(done / perEpoch),
        wall_minutes: (state.wall_ms + Date.now() - started) / 60_000, last, best, splits: data.splits,
        config_sha: sha(JSON.stringify(cfg)), skipped: data.skipped,
      }
      writeFileSync(join(this.runDir, 'summary.json'), JSON.stringify(summary, null, 2))
      return summary
    } finally {
      recorder?.close()
      if (!this.opts.worker) await worker.close()
    }
  }
}

function initialState(cfg: ExperimentConfig, data: RunData): DriverState {
  return {
    step: 0, epoch: 0, rng: Rng.keyed(cfg.seed, STREAM.augment).state(), best: null, wall_ms: 0,
    samplers: {
      labeled: new Sampler(data.labeled.length, cfg.seed, STREAM.labeledSampler).state(),
      unlabeled: new Sampler(data.unlabeled.length, cfg.seed, STREAM.unlabeledSampler).state(),
    },
  }
}

function generators(cfg: ExperimentConfig, data: RunData, state: DriverState): Generators {
  return {
    augment: Rng.fromState(state.rng),
    labeled: new Sampler(data.labeled.length, cfg.seed, STREAM.labeledSampler, state.samplers.labeled),
    unlabeled: new Sampler(data.unlabeled.length, cfg.seed, STREAM.unlabeledSampler, state.samplers.unlabeled),
  }
}

/** The driver's state right after planning `plan`: what a checkpoint taken after it holds. */
function snapshotOf(plan: StepPlan, perEpoch: number, gen: Generators, state: DriverState): DriverState {
  return {
    step: plan.step, epoch: Math.floor(plan.step / perEpoch), rng: gen.augment.state(), best: state.best, wall_ms: 0,
    samplers: { labeled: gen.labeled.state(), unlabeled: gen.unlabeled.state() },
  }
}

/** The encoded bytes of the plan's samples, as the step's tensors. */
async function readStep(plan: StepPlan, data: RunData) {
  const lrefs = plan.samples.labeled.map((i) => data.labeled[i]!)
  const urefs = plan.samples.unlabeled.map((i) => data.unlabeled[i]!)
  const [ls, us] = await Promise.all([Promise.all(lrefs.map((r) => readSample(r))), Promise.all(urefs.map((r) => readSample(r)))])
  const tensors: Tensors = {}
  ls.forEach((s, i) => { tensors[`img_l.${i}`] = bytesTensor(s.image); tensors[`lbl_l.${i}`] = bytesTensor(s.label!) })
  us.forEach((s, i) => { tensors[`img_u.${i}`] = bytesTensor(s.image) })
  return { tensors, files: { img_l: lrefs.map((r) => r.image), lbl_l: lrefs.map((r) => r.label ?? ''), img_u: urefs.map((r) => r.image) } }
}

function stepEvent(plan: StepPlan, r: OpResult<'train_step'>): StepEvent {
  return {
    type: 'step', step: plan.step, epoch: plan.epoch, lr: plan.lr, head_lr: plan.head_lr, ema_decay: plan.ema.decay,
    weak_threshold: plan.policy.weak_threshold, params: plan.params,
    total: r.total, losses: r.losses, stats: r.stats, time_ms: r.time_ms,
  }
}

/** A worker error about one of a step's tensors (say `tensors.lbl_l.1`) names that tensor's file. */
function nameFile(e: unknown, files: Record<string, string[]>): unknown {
  const m = e instanceof WorkerError ? /^tensors\.(img_l|lbl_l|img_u)\.(\d+)$/.exec(e.path ?? '') : null
  const file = m ? files[m[1]!]?.[Number(m[2])] : undefined
  if (!file) return e
  const err = new Error(`${file}: ${(e as WorkerError).message}`)
  ;(err as Error & { cause?: unknown }).cause = e
  return err
}

function sha(text: string): string {
  // Small and dependency-free is enough for a config fingerprint.
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return (h >>> 0).toString(16).padStart(8, '0')
}

function readEvals(metrics: string): EvalEvent[] {
  if (!existsSync(metrics)) return []
  return readFileSync(metrics, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'eval')
}

function bestFromMetrics(metrics: string): EvalEvent | null {
  return readEvals(metrics).reduce<EvalEvent | null>((b, e) => (!b || e.miou > b.miou ? e : b), null)
}

function lastFromMetrics(metrics: string): EvalEvent | null {
  return readEvals(metrics).pop() ?? null
}

function progressLine(step: number, total: number, t0: number, startStep: number, ev: StepEvent): void {
  const rate = (step - startStep) / Math.max(1e-3, (Date.now() - t0) / 1000)
  const eta = rate > 0 ? (total - step) / rate : 0
  const mm = (s: number) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`
  const losses = Object.entries(ev.losses).map(([k, v]) => `${k} ${v.value.toFixed(3)}`).join(' ')
  const width = 24
  const filled = Math.round((step / total) * width)
  process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${total} ep ${ev.epoch} ${losses} ${rate.toFixed(1)} it/s ETA ${mm(eta)}   `)
}

export { readCheckpoint, type EvalEvent }
