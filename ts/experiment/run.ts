// An experiment: the training loop, evaluation, checkpoints, resume and the run directory.
// The loop is pipelined: step n+1's bytes and parameters are read and on the wire (K = 2) while
// the worker computes step n.
import { EventEmitter } from 'node:events'
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { ExperimentConfig } from '../config/schema.ts'
import { readSample, type Sample, type SampleRef } from '../data/dataset.ts'
import { WorkerError } from '../wire/errors.ts'
import { imageSize } from '../data/imagesize.ts'
import type { CallResult } from '../wire/connection.ts'
import type { OpArgs, OpResult } from '../wire/ops/index.ts'
import { bytesTensor, type Tensors } from '../wire/tensor.ts'
import { Worker } from '../worker/worker.ts'
import { drawLabeled, drawMix, drawUnlabeledAug, drawUnlabeledCrop } from './augparams.ts'
import { findCheckpoint, readCheckpoint, saveCheckpoint, type DriverState } from './checkpoint.ts'
import { loadRunData, type RunData } from './data.ts'
import { evaluateOn, type EvalEvent } from './evaluate.ts'
import { Recorder } from './record.ts'
import { Rng } from './rng.ts'
import { Sampler } from './sampler.ts'
import { readsOnlyLabeled } from '../loss/spec.ts'
import { learningRates, lossWeights, stepPolicy, stepsPerEpoch, type Progress } from './schedules.ts'
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

export interface StepEvent { type: 'step'; step: number; epoch: number; lr: number; total: number; losses: Record<string, { value: number; weight: number }>; stats: OpResult<'train_step'>['stats']; time_ms: Record<string, number> }

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

type TrainArgs = OpArgs<'train_step'>

export class Experiment extends EventEmitter {
  readonly runDir: string
  private cfg: ExperimentConfig
  private opts: RunOptions
  private skipped: Array<{ file: string; reason: string }> = []

  constructor(cfg: ExperimentConfig, opts: RunOptions = {}) {
    super()
    this.opts = opts
    if (opts.resume) {
      if (!opts.runDir) throw new Error('resume needs the run directory')
      const saved = join(opts.runDir, 'config.json')
      if (!existsSync(saved)) throw new Error(`${opts.runDir} is not a run directory (no config.json)`)
      this.cfg = JSON.parse(readFileSync(saved, 'utf8'))
    } else {
      this.cfg = cfg
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)
    this.runDir = resolve(opts.runDir ?? join(this.cfg.runs_dir, `${this.cfg.name}-${stamp}`))
  }

  get config(): ExperimentConfig { return this.cfg }

  async run(): Promise<RunSummary> {
    const cfg = this.cfg
    const log = this.opts.log ?? ((l: string) => process.stderr.write(`${l}\n`))
    mkdirSync(join(this.runDir, 'checkpoints'), { recursive: true })
    if (!this.opts.resume) writeFileSync(join(this.runDir, 'config.json'), JSON.stringify(cfg, null, 2))
    const data = await loadRunData(cfg)
    writeFileSync(join(this.runDir, 'splits.json'), JSON.stringify(data.splits, null, 2))
    const worker = this.opts.worker ?? await Worker.start({ python: cfg.worker.python ?? undefined, device: cfg.worker.device, transport: cfg.worker.transport, log: 'silent' })
    const started = Date.now()
    const recorder = this.opts.record ? new Recorder(this.opts.record) : null
    try {
      recorder?.write('configure', workerSettings(cfg))
      await worker.call('configure', workerSettings(cfg), { timeoutMs: 600_000 })
      const perEpoch = stepsPerEpoch(cfg, data.labeled.length)
      const total = perEpoch * cfg.sampling.epochs
      let state: DriverState = {
        step: 0, epoch: 0, rng: Rng.seeded(cfg.seed, 0).state(), best: null, wall_ms: 0,
        samplers: {
          labeled: new Sampler(data.labeled.length, cfg.seed, 1).state(),
          unlabeled: new Sampler(data.unlabeled.length, cfg.seed, 2).state(),
        },
      }
      if (this.opts.resume) {
        const ck = findCheckpoint(this.runDir)
        if (ck) {
          await worker.call('load', { path: ck.workerFile }, { timeoutMs: 600_000 })
          state = ck.state
          log(`resumed ${this.runDir} at step ${state.step} (epoch ${state.epoch}) from ${ck.dir}`)
        }
      }
      const rng = Rng.fromState(state.rng)
      const lab = new Sampler(data.labeled.length, cfg.seed, 1, state.samplers.labeled)
      const unl = new Sampler(data.unlabeled.length, cfg.seed, 2, state.samplers.unlabeled)
      const metrics = join(this.runDir, 'metrics.jsonl')
      let best: EvalEvent | null = null
      let last: EvalEvent | null = null
      const stopAt = this.opts.stopAfter === undefined ? total : Math.min(total, state.step + this.opts.stopAfter)
      const inflight: Array<{ step: number; epoch: number; lr: number; reply: Promise<CallResult<OpResult<'train_step'>>>; snapshot: DriverState }> = []
      const showProgress = this.opts.progress ?? process.stderr.isTTY
      const t0 = Date.now()
      let done = state.step

      const finish = async () => {
        const f = inflight.shift()!
        const r = await f.reply
        const ev: StepEvent = { type: 'step', step: f.step, epoch: f.epoch, lr: f.lr, total: r.body.total, losses: r.body.losses, stats: r.body.stats, time_ms: r.body.time_ms }
        appendFileSync(metrics, JSON.stringify(ev) + '\n')
        this.emit('step', ev)
        done = f.step
        if (showProgress) progressLine(f.step, total, t0, state.step, ev)
        return f
      }

      for (let step = state.step + 1; step <= stopAt; step++) {
        const epoch = Math.floor((step - 1) / perEpoch)
        const progress: Progress = { step: step - 1, epoch, stepsPerEpoch: perEpoch, totalSteps: total }
        const { body, tensors, lr, files } = await this.buildStep(data, rng, lab, unl, progress)
        const snapshot: DriverState = { step, epoch: Math.floor(step / perEpoch), rng: rng.state(), best: state.best, wall_ms: 0, samplers: { labeled: lab.state(), unlabeled: unl.state() } }
        recorder?.write('train_step', body, tensors)
        const reply = worker.call('train_step', body, { tensors, timeoutMs: 3_600_000 }).catch((e) => { throw nameFile(e, files) })
        reply.catch(() => undefined) // awaited in order below; this keeps an early failure from being "unhandled"
        inflight.push({ step, epoch, lr, reply, snapshot })
        const epochEnd = step % perEpoch === 0
        const ckpt = step % cfg.checkpoint.every_steps === 0 || step === stopAt
        if (inflight.length >= 2 || epochEnd || ckpt) {
          // Epoch ends and checkpoints see the state after exactly this step: drain the pipeline.
          while (inflight.length > (epochEnd || ckpt ? 0 : 1)) await finish()
        }
        if (epochEnd && (Math.floor(step / perEpoch) % cfg.eval.every_epochs === 0 || step === total)) {
          last = await evaluateOn(worker, cfg, data, step, Math.floor(step / perEpoch))
          appendFileSync(metrics, JSON.stringify(last) + '\n')
          this.emit('eval', last)
          if (!state.best || last.miou > state.best.miou) {
            state.best = { miou: last.miou, step, epoch: last.epoch }
            best = last
            await saveCheckpoint(join(this.runDir, 'checkpoints', 'best'), worker, { ...snapshot, best: state.best, wall_ms: state.wall_ms + Date.now() - started }, cfg)
          }
          log(`epoch ${last.epoch} step ${step}: ${last.model} mIoU ${(last.miou * 100).toFixed(2)} (best ${(state.best.miou * 100).toFixed(2)} at epoch ${state.best.epoch})`)
        }
        if (ckpt) {
          await saveCheckpoint(join(this.runDir, 'checkpoints', 'latest'), worker, { ...snapshot, best: state.best, wall_ms: state.wall_ms + Date.now() - started }, cfg)
        }
      }
      while (inflight.length) await finish()
      if (showProgress) process.stderr.write('\n')
      best ??= bestFromMetrics(metrics)
      last ??= lastFromMetrics(metrics)
      const summary: RunSummary = {
        name: cfg.name, run_dir: this.runDir, steps: done, epochs: Math.floor(done / perEpoch),
        wall_minutes: (state.wall_ms + Date.now() - started) / 60_000, last, best, splits: data.splits,
        config_sha: sha(JSON.stringify(cfg)), skipped: this.skipped,
      }
      writeFileSync(join(this.runDir, 'summary.json'), JSON.stringify(summary, null, 2))
      return summary
    } finally {
      recorder?.close()
      if (!this.opts.worker) await worker.close()
    }
  }

  /** Read the step's samples and draw all its parameters. */
  private async buildStep(data: RunData, rng: Rng, lab: Sampler, unl: Sampler, p: Progress) {
    const cfg = this.cfg
    const b = cfg.sampling.batch_size
    // A supervised-only loss reads no unlabeled batch: none is drawn, read or sent.
    const semi = !readsOnlyLabeled(cfg.loss)
    const [[lrefs, lsamples], [urefs, usamples]] = await Promise.all([
      this.readBatch(lab, data.labeled, b), semi ? this.readBatch(unl, data.unlabeled, b) : [[], []] as [SampleRef[], Sample[]],
    ])
    const tensors: Tensors = {}
    const labeledAug = lsamples.map((s, i) => {
      tensors[`img_l.${i}`] = bytesTensor(s.image)
      tensors[`lbl_l.${i}`] = bytesTensor(s.label!)
      return drawLabeled(rng, cfg, size(s.image, lrefs[i]!))
    })
    const unlabeledCrop = usamples.map((s, i) => {
      tensors[`img_u.${i}`] = bytesTensor(s.image)
      return drawUnlabeledCrop(rng, cfg, size(s.image, urefs[i]!))
    })
    const unlabeledAug = usamples.map(() => drawUnlabeledAug(rng, cfg))
    const policy = stepPolicy(cfg, p)
    const { lr, head_lr } = learningRates(cfg, p)
    const body: TrainArgs = {
      step: p.step + 1, lr, head_lr, weights: lossWeights(cfg, p), policy,
      labeled_aug: labeledAug,
      ...(semi ? { unlabeled_crop: unlabeledCrop, unlabeled_aug: unlabeledAug, mix: drawMix(rng, policy.mix, b, cfg.data.unlabeled.crop) } : {}),
      ...(data.dataset.labelLut ? { label_lut: data.dataset.labelLut } : {}),
    }
    return { body, tensors, lr, files: { img_l: lrefs.map((r) => r.image), lbl_l: lrefs.map((r) => r.label ?? ''), img_u: urefs.map((r) => r.image) } }
  }

  /** `n` readable samples; with data.skip_bad_samples an unreadable one is replaced by the
   *  sampler's next and recorded, else its error (naming the file) ends the run. */
  private async readBatch(sampler: Sampler, refs: SampleRef[], n: number): Promise<[SampleRef[], Sample[]]> {
    const outRefs: SampleRef[] = []
    const out: Sample[] = []
    const skip = this.cfg.data.skip_bad_samples
    let guard = 0
    while (out.length < n) {
      const want = sampler.take(n - out.length).map((i) => refs[i]!)
      const got = await Promise.all(want.map((r) => readSample(r, {
        skipBad: skip, onSkip: (e) => this.skipped.push({ file: r.image, reason: e.message }),
      })))
      got.forEach((s, i) => { if (s) { out.push(s); outRefs.push(want[i]!) } })
      if (++guard > 100 + refs.length) throw new Error('every sample read failed; see the skipped list')
    }
    return [outRefs, out]
  }
}


function size(bytes: Uint8Array, ref: SampleRef) {
  return imageSize(bytes, ref.image)
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
