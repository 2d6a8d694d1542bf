// An experiment: the training loop, evaluation, checkpoints, resume and the run directory.
// The loop is pipelined: step n+1's bytes and parameters are read and on the wire (K = 2) while
// the worker computes step n. With world.size N > 1 the driver starts N workers (one
// torch.distributed group), plans the global step as at any size and sends each rank its shard.
import { EventEmitter } from 'node:events'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { checkConfig } from '../config/check.ts'
import { applySet } from '../config/load.ts'
import type { ExperimentConfig } from '../config/schema.ts'
import { planStep, type Generators, type PlanData, type StepPlan } from '../policy/plan.ts'
import { progressAt, stepsPerEpoch } from '../policy/progress.ts'
import { loadDriverKeys, type CurveServer, type RefusedPeer } from '../wire/curve.ts'
import type { Hello } from '../wire/envelope.ts'
import type { OpResult } from '../wire/ops/index.ts'
import { WorkerGroup } from '../worker/group.ts'
import type { Worker } from '../worker/worker.ts'
import { findCheckpoint, readCheckpoint, saveCheckpoint, type DriverState } from './checkpoint.ts'
import { loadRunData, type RunData } from './data.ts'
import { assertReplicas, checkReplicas, evaluateOn, type EvalEvent } from './evaluate.ts'
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
  /** Reuse a running worker (the REPL, tests) at world.size 1; otherwise one is started and closed. */
  worker?: Worker
  /** Reuse a started group of world.size workers; otherwise one is started and closed. */
  group?: WorkerGroup
  /** With resume: `world.*` settings that change on resuming (`world.size=2`); nothing else may. */
  set?: string[]
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
  private readonly curve: CurveServer | null

  constructor(cfg: ExperimentConfig, opts: RunOptions = {}) {
    super()
    this.opts = opts
    if (opts.resume) {
      if (!opts.runDir) throw new Error('resume needs the run directory')
      const saved = join(opts.runDir, 'config.json')
      if (!existsSync(saved)) throw new Error(`${opts.runDir} is not a run directory (no config.json)`)
      let config: unknown = JSON.parse(readFileSync(saved, 'utf8'))
      for (const s of opts.set ?? []) {
        if (!/^\s*world\./.test(s)) throw new Error(`--set ${s}: a resumed run keeps its configuration; only world.* settings may change`)
        config = applySet(config, s)
      }
      this.cfg = checkConfig(config, opts.set?.length ? `${saved} with --set` : saved)
    } else {
      // Checked here, before a run directory or a worker exists.
      this.cfg = checkConfig(cfg)
    }
    const size = this.cfg.world.size
    if (opts.record && size > 1) {
      throw new Error(`--record writes one worker's requests for an in-process replay; at world.size ${size} a rank's step depends on the others (DDP, SyncBN), so no one rank's requests replay to the run's losses: record at world.size 1`)
    }
    if (opts.worker && size > 1) throw new Error(`a single worker was given, but world.size is ${size}: pass a group of ${size} (option group)`)
    if (opts.group && opts.group.size !== size) throw new Error(`the given worker group has ${opts.group.size} ranks, but world.size is ${size}`)
    // The key directory is read now, so a missing or unreadable key stops the run before it starts.
    this.curve = this.cfg.world.keys === null || opts.group || opts.worker ? null : loadDriverKeys(this.cfg.world.keys)
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)
    this.runDir = resolve(opts.runDir ?? join(this.cfg.runs_dir, `${this.cfg.name}-${stamp}`))
  }

  get config(): ExperimentConfig { return this.cfg }
  /** The workers of the run in progress (null before it starts them). */
  get workers(): WorkerGroup | null { return this.group }
  private group: WorkerGroup | null = null

  /** plan → read bytes → send → record → evaluate/checkpoint when the plan says; the next step
   *  is planned and on the wire while the worker computes this one. */
  async run(): Promise<RunSummary> {
    const cfg = this.cfg
    const data = await loadRunData(cfg)
    mkdirSync(join(this.runDir, 'checkpoints'), { recursive: true })
    if (!this.opts.resume) writeFileSync(join(this.runDir, 'config.json'), JSON.stringify(cfg, null, 2))
    writeFileSync(join(this.runDir, 'splits.json'), JSON.stringify(data.splits, null, 2))
    const owned = !this.opts.worker && !this.opts.group
    const group = this.opts.group ?? (this.opts.worker ? WorkerGroup.of(this.opts.worker) : await this.startGroup())
    this.group = group
    this.emit('workers', group)
    const recorder = this.opts.record ? new Recorder(this.opts.record) : null
    try {
      const run = await this.start(group, data, recorder)
      const pipe = new Pipeline(group, data, recorder, (plan, result) => this.stepDone(run, plan, result))
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
      if (owned) await group.close()
    }
  }

  /** The world.size ranks: spawned here, or, with world.listen, gathered as they connect. */
  private async startGroup(): Promise<WorkerGroup> {
    const w = this.cfg.world
    if (w.listen === null) {
      return WorkerGroup.start({
        size: w.size, devices: w.devices, python: this.cfg.worker.python ?? undefined, device: this.cfg.worker.device,
        transport: this.cfg.worker.transport, log: 'silent',
      })
    }
    const events = new EventEmitter()
    events.on('rank', (h: Hello, n: number, of: number) => this.log(`rank ${h.dist?.rank ?? 0} connected from ${h.host} (pid ${h.pid}, ${h.device}): ${n} of ${of}`))
    // A refused peer retries every few hundred ms: say it once per address and reason.
    const refused = new Set<string>()
    events.on('refused', (p: RefusedPeer) => {
      const key = `${p.address}: ${p.reason}`
      if (!refused.has(key)) { refused.add(key); this.log(`refused a peer from ${key}`) }
    })
    events.on('stray', (h: Hello) => this.log(`ignored a worker that is not in this group (pid ${h.pid} on ${h.host})`))
    const curve = this.curve
    this.log(`waiting up to ${w.wait_s} s for ${w.size} rank${w.size > 1 ? 's' : ''} on ${w.listen}${curve ? ' (CURVE)' : ''}: start them with ` +
      `torchrun … -m prcl_worker --connect ${w.listen}${curve ? ' --keys DIR' : ''}`)
    return WorkerGroup.connect({ size: w.size, listen: w.listen, curve, insecure: w.insecure, waitMs: w.wait_s * 1000, events })
  }

  /** Configure the workers, and restore the newest checkpoint when resuming: each rank its own
   *  state, or, from a checkpoint saved by another number of ranks, rank 0's state in every rank. */
  private async start(group: WorkerGroup, data: RunData, recorder: Recorder | null): Promise<RunState> {
    const cfg = this.cfg
    recorder?.write('configure', workerSettings(cfg))
    await group.all('configure', () => workerSettings(cfg), { timeoutMs: 600_000 })
    let state = initialState(cfg, data)
    const ck = this.opts.resume ? findCheckpoint(this.runDir) : null
    if (ck) {
      const saved = ck.workerFiles.length
      if (saved !== group.size) {
        this.log(`warning: ${ck.dir} was saved by ${saved} ${saved === 1 ? 'worker' : 'ranks'} and this run has ${group.size}: every rank loads rank 0's state, and the per-step losses will differ from those of an uninterrupted run at world size ${saved}`)
      }
      await group.all('load', (r) => ({ path: saved === group.size ? ck.workerFiles[r]! : ck.workerFile }), { timeoutMs: 600_000 })
      state = ck.state
      this.log(`resumed ${this.runDir} at step ${state.step} (epoch ${state.epoch}) from ${ck.dir}`)
    }
    const perEpoch = stepsPerEpoch(cfg, data.labeled.length)
    const total = perEpoch * cfg.sampling.epochs
    return {
      group, data, state, perEpoch, total, gen: generators(cfg, data, state),
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
    // Several ranks: each must hold rank 0's teacher, student and head, or the score (dealt over
    // the ranks) and the checkpoints would mix models. The check is logged either way.
    const replicas = await checkReplicas(run.group, step, snapshot.epoch)
    if (replicas) {
      appendLine(run.metrics, replicas)
      this.emit('replicas', replicas)
      assertReplicas(replicas)
    }
    const ev = await evaluateOn(run.group, this.cfg, run.data, step, snapshot.epoch)
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
    return saveCheckpoint(join(this.runDir, 'checkpoints', name), run.group, { ...snapshot, best: run.state.best, wall_ms: this.wallMs(run) }, this.cfg)
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
  group: WorkerGroup
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
