// An experiment: the training loop, evaluation, checkpoints, resume and the run directory.
// The loop is pipelined: step n+1's bytes and parameters are read and on the wire (K = 2) while
// the worker computes step n. With world.size N > 1 the driver starts N workers (one
// torch.distributed group), plans the global step as at any size and sends each rank its shard.
import { EventEmitter } from 'node:events'
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { checkConfig } from '../config/check.ts'
import { applySet } from '../config/load.ts'
import type { ExperimentConfig } from '../config/schema.ts'
import { evaluatesAfter, planStep, type Generators, type PlanData, type StepPlan } from '../policy/plan.ts'
import { progressAt, stepsPerEpoch } from '../policy/progress.ts'
import { loadDriverKeys, type CurveServer, type RefusedPeer } from '../wire/curve.ts'
import type { Hello } from '../wire/envelope.ts'
import { messageOf } from '../wire/errors.ts'
import type { OpResult } from '../wire/ops/index.ts'
import { WorkerGroup } from '../worker/group.ts'
import type { Worker } from '../worker/worker.ts'
import { newestCheckpoint, readCheckpoint, saveCheckpoint, workerFileNames, writeDurable, type DatasetEntries, type DriverState, type LoadedCheckpoint, type RunIdentity } from './checkpoint.ts'
import { guardSummary, NonFiniteGuard, NonFiniteStepError, type GuardFields, type GuardSummary, type SavedCheckpoint } from './guard.ts'
import { loadRunData, type RunData } from './data.ts'
import { assertReplicas, checkReplicas, evaluateOn, type EvalEvent } from './evaluate.ts'
import { generators, initialState, snapshotOf } from './generators.ts'
import { appendLine, cutMetrics, evalsFromMetrics, isScore, loggedSteps, stepEvent, type StepEvent } from './metrics-log.ts'
import { Progress } from './progress.ts'
import { Pipeline } from './pipeline.ts'
import { checkRankData } from './rank-data.ts'
import { Recorder } from './record.ts'
import { checkRestartsLeft, isRecoverable, recoveriesFrom, type Recovery } from './recovery.ts'
import {
  checkConfigChanges, checkDataIdentity, configChanges, createRunDirectory, describeChange, existingRun, isRunDirectory,
  lockRunDirectory, normalized, RUN_FILES, runIdentity, type RunLock,
} from './resume.ts'
import { workerSettings } from './settings.ts'
import { resolvePretrained, type PretrainedWeights } from '../weights/resolve.ts'
import { RunBoard } from '../report/board.ts'

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
  /** With resume: settings applied on top of the configuration (the given one, else the run's
   *  config.json). `world.*` may change; with allowChanges also the settings in ALLOWED_CHANGES. */
  set?: string[]
  /** With resume: accept changes of sampling.epochs, eval.every_epochs, checkpoint.every_steps, a
   *  split file's bytes that list the same samples, and data files' sizes or times. */
  allowChanges?: boolean
  /** Replace the run in runDir (its run files are removed first) instead of refusing it (the demo). */
  overwrite?: boolean
  /** The progress line on stderr: false for none [default: redrawn each step on a terminal, else
   *  one plain line every log.progress_s seconds]. */
  progress?: boolean
  log?: (line: string) => void
  /** Record every worker request to this file, for an in-process replay (python -m prcl_worker.replay). */
  record?: string
  /** model.pretrained names a pickle-based file prcl's catalog does not pin: load it even on a
   *  torch < 2.6, whose weights-only loader is not safe (CLI: --trust-weights). */
  trustWeights?: boolean
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
  /** Steps not applied because their loss or gradients were not finite (ts/experiment/guard.ts). */
  guard: GuardSummary
  /** Why the run stopped before its last step (stop(): a signal), or null. */
  stopped: string | null
  /** Every step of the run is done (not stopped, not cut short by stopAfter). */
  finished: boolean
  /** Each time a dead or stalled worker was replaced and the run continued (recovery.ts). */
  recoveries: Recovery[]
}

export class Experiment extends EventEmitter {
  /** The run directory (a default name gets a suffix in run() when another run took it). */
  get runDir(): string { return this.dir }
  private dir: string
  private readonly autoDir: boolean
  /** This run's identity (config, splits, data), recorded in every checkpoint. */
  private identity: { identity: RunIdentity; entries: DatasetEntries } | null = null
  /** The checkpoint a resumed run starts from (null: from step 0). */
  private resumeFrom: LoadedCheckpoint | null = null
  private cfg: ExperimentConfig
  private opts: RunOptions
  private readonly curve: CurveServer | null

  /** `cfg`: the configuration; on resume the one asked for (compared with the run's), or
   *  undefined for the run's own config.json. */
  constructor(cfg: ExperimentConfig | undefined, opts: RunOptions = {}) {
    super()
    this.opts = opts
    if (opts.resume) {
      if (!opts.runDir) throw new Error('resume needs the run directory')
      const saved = join(opts.runDir, 'config.json')
      if (!existsSync(saved)) throw new Error(`${opts.runDir} is not a run directory (no config.json)`)
      const runConfig: unknown = JSON.parse(readFileSync(saved, 'utf8'))
      let config: unknown = structuredClone(cfg ?? runConfig)
      // A run directory does not choose the program that runs: the interpreter comes from this
      // environment (PRCL_PYTHON, or --set worker.python=PATH), never from its config.json.
      if (!cfg) config = withoutInterpreter(config, (p) => this.log(`${saved} names worker.python ${p}: not used (a run directory does not choose the program to run); the worker runs on this environment's interpreter (PRCL_PYTHON, or --set worker.python=PATH)`))
      for (const s of opts.set ?? []) config = applySet(config, s)
      this.cfg = checkConfig(config, `${cfg ? 'the configuration' : saved}${opts.set?.length ? ' with --set' : ''}`)
      // Against the run's config.json now, before anything starts; against the checkpoint's in run().
      checkConfigChanges(configChanges(normalized(runConfig), this.cfg), { runDir: opts.runDir, allowChanges: opts.allowChanges, against: saved })
    } else {
      if (!cfg) throw new Error('a configuration is needed to start a run (or resume one)')
      // Checked here, before a run directory or a worker exists.
      this.cfg = checkConfig(cfg)
      if (opts.runDir && !opts.overwrite && isRunDirectory(opts.runDir)) throw existingRun(resolve(opts.runDir))
    }
    const size = this.cfg.world.size
    if (opts.record && size > 1) {
      throw new Error(`--record writes one worker's requests for an in-process replay; at world.size ${size} a rank's step depends on the others (DDP, SyncBN), so no one rank's requests replay to the run's losses: record at world.size 1`)
    }
    if (opts.record && this.cfg.data.reader === 'rank') {
      throw new Error('--record writes the images each request carries, and with data.reader rank the requests carry only file names: record with data.reader driver')
    }
    if (opts.worker && size > 1) throw new Error(`a single worker was given, but world.size is ${size}: pass a group of ${size} (option group)`)
    if (opts.group && opts.group.size !== size) throw new Error(`the given worker group has ${opts.group.size} ranks, but world.size is ${size}`)
    // The key directory is read now, so a missing or unreadable key stops the run before it starts.
    this.curve = this.cfg.world.keys === null || opts.group || opts.worker ? null : loadDriverKeys(this.cfg.world.keys)
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)
    this.dir = resolve(opts.runDir ?? join(this.cfg.runs_dir, `${this.cfg.name}-${stamp}`))
    this.autoDir = !opts.runDir
  }

  get config(): ExperimentConfig { return this.cfg }

  /** Stop after the steps already sent: they finish, a checkpoint is written, and run() returns
   *  a summary with `stopped` set (a first Ctrl-C in the CLI). */
  stop(reason = 'stop requested'): void {
    if (this.stopReason === null) this.stopReason = reason
  }
  private stopReason: string | null = null
  /** The workers of the run in progress (null before it starts them). */
  get workers(): WorkerGroup | null { return this.group }
  private group: WorkerGroup | null = null

  /** plan → read bytes → send → record → evaluate/checkpoint when the plan says; the next step
   *  is planned and on the wire while the worker computes this one. */
  async run(): Promise<RunSummary> {
    // The weights a new run starts from, found and hashed before anything is created.
    if (!this.opts.resume) await this.pretrained()
    // Every listed file checked first (data.check): a bad one found now, not hours in.
    const data = await loadRunData(this.cfg, { check: this.cfg.data.check })
    const lock = await this.openRunDir(data)
    try {
      return await this.runLocked(data)
    } catch (e) {
      // A new run whose workers never started leaves nothing behind (no directory holding only
      // config.json): the error says why, and the same command starts it again.
      if (!this.opts.resume && !this.began) { lock.release(); discardNewRun(this.dir) }
      throw e
    } finally {
      lock.release()
    }
  }
  /** model.pretrained, resolved once (ts/weights/resolve.ts): needed only when no checkpoint is loaded. */
  private pretrained(): Promise<PretrainedWeights | null> {
    this.weights ??= resolvePretrained(this.cfg.model, { trust: this.opts.trustWeights })
    return this.weights
  }
  private weights: Promise<PretrainedWeights | null> | null = null
  /** Set once the workers are configured: from then on the run directory is kept. */
  private began = false
  /** TensorBoard and pictures (ts/report/board.ts), from the first step on. */
  private board: RunBoard | null = null

  /** Create (a new run) or reopen (resume) the run directory, locked for this process; when
   *  resuming, find the newest valid checkpoint and check that this run matches it. */
  private async openRunDir(data: RunData): Promise<RunLock> {
    this.identity = await runIdentity(this.cfg, data)
    if (!this.opts.resume) this.dir = createRunDirectory(this.dir, { auto: this.autoDir })
    const lock = lockRunDirectory(this.dir)
    try {
      if (this.opts.resume) {
        if (await this.checkResume()) await this.writeRunFiles(data)
      } else {
        if (this.opts.overwrite) for (const f of RUN_FILES) if (f !== 'run.lock') rmSync(join(this.dir, f), { recursive: true, force: true })
        // Checked again under the lock: another driver may have started a run here meanwhile.
        if (isRunDirectory(this.dir, ['run.lock'])) throw existingRun(this.dir)
        await this.writeRunFiles(data)
      }
      this.emit('run-dir', this.dir)
      return lock
    } catch (e) {
      lock.release()
      throw e
    }
  }

  private async writeRunFiles(data: RunData): Promise<void> {
    mkdirSync(join(this.dir, 'checkpoints'), { recursive: true })
    await writeDurable(join(this.dir, 'config.json'), JSON.stringify(this.cfg, null, 2))
    await writeDurable(join(this.dir, 'splits.json'), JSON.stringify(data.splits, null, 2))
  }

  /** Find the checkpoint to resume from and check this run against it (configuration, splits,
   *  data); cut metrics.jsonl back to its step. Returns true when the run starts over (it never
   *  got past its start). */
  private async checkResume(): Promise<boolean> {
    const metrics = join(this.dir, 'metrics.jsonl')
    const skipped: string[] = []
    const ck = await newestCheckpoint(this.dir, (l) => { skipped.push(l); this.log(l) })
    if (!ck) {
      const steps = loggedSteps(metrics)
      if (steps > 0) {
        throw new Error(`cannot resume ${this.dir}: it has no valid checkpoint${skipped.length ? ` (${skipped.length} skipped, see the warnings above)` : ''}, ` +
          `although its metrics.jsonl records ${steps} steps; resuming would start it again at step 0. ` +
          `Start a new run with its configuration instead: prcl train --config ${join(this.dir, 'config.json')}`)
      }
      this.log(`${this.dir} has no checkpoint and logged no step (it never got past its start): starting it at step 0`)
      cutMetrics(metrics, 0)
      this.resumeFrom = null
      return true
    }
    const accepted = checkConfigChanges(configChanges(normalized(ck.config), this.cfg), {
      runDir: this.dir, allowChanges: this.opts.allowChanges, against: `its checkpoint ${ck.dir}`,
    })
    for (const w of await checkDataIdentity(ck, this.identity!, { runDir: this.dir, allowChanges: this.opts.allowChanges })) this.log(w)
    const changed = accepted.filter((c) => !c.path.startsWith('world.'))
    if (changed.length) {
      this.log(`resuming with changed settings (--allow-changes): ${changed.map(describeChange).join('; ')}`)
      await writeDurable(join(this.dir, 'config.json'), JSON.stringify(this.cfg, null, 2))
    }
    const cut = cutMetrics(metrics, ck.state.step)
    if (cut.dropped || cut.torn) {
      this.log(`metrics.jsonl: dropped ${cut.dropped} line${cut.dropped === 1 ? '' : 's'} logged after step ${ck.state.step}, the checkpoint's step (those steps run again)` +
        `${cut.torn ? `, and ${cut.torn} torn line${cut.torn === 1 ? '' : 's'}` : ''}`)
    }
    this.resumeFrom = ck
    return false
  }

  private async runLocked(data: RunData): Promise<RunSummary> {
    const owned = !this.opts.worker && !this.opts.group
    const recorder = this.opts.record ? new Recorder(this.opts.record) : null
    const recoveries: Recovery[] = []
    try {
      let run = await this.start(await this.openGroup(), data, recorder)
      this.began = true
      this.board = new RunBoard(this.dir, this.cfg)
      for (;;) {
        try {
          await this.train(run, recorder)
          return this.summarize(run)
        } catch (e) {
          this.checkRecoverable(e, owned, recoveries, run.done)
          run = await this.recover(e, run, recorder, recoveries)
        }
      }
    } finally {
      recorder?.close()
      // The newest group (this.group: set as each is opened, so also one whose start failed).
      if (owned) await this.group?.close()
    }
  }

  /** Start the workers again and continue from the newest valid checkpoint: every draw is seeded
   *  and checkpointed, so the run goes on as if nothing had happened. Logged as a recovery. */
  private async recover(e: unknown, failed: RunState, recorder: Recorder | null, recoveries: Recovery[]): Promise<RunState> {
    await failed.group.close()
    const ck = await newestCheckpoint(this.dir, (l) => this.log(l))
    const from = ck?.state.step ?? 0
    const recovery: Recovery = {
      type: 'recovery', step: from, failed_after: failed.done, attempt: recoveries.length + 1, reason: messageOf(e),
      checkpoint: ck?.dir ?? null, time: new Date().toISOString(),
    }
    recoveries.push(recovery)
    this.log(`recovery ${recovery.attempt}: ${recovery.reason}; starting the workers again and continuing from ${ck ? `${ck.dir} (step ${from})` : 'step 0 (no checkpoint yet)'}`)
    cutMetrics(failed.metrics, from)
    appendLine(failed.metrics, recovery)
    this.emit('recovery', recovery)
    this.board?.recovery(recovery)
    this.guard = null
    this.resumeFrom = ck
    this.lastSaved = null
    return this.start(await this.openGroup(), failed.data, recorder, ck, true)
  }

  /** The run's workers: given, or started (and announced) here. */
  private async openGroup(): Promise<WorkerGroup> {
    const group = this.opts.group ?? (this.opts.worker ? WorkerGroup.of(this.opts.worker) : await this.startGroup())
    this.group = group
    this.emit('workers', group)
    return group
  }

  /** Throws `e` unless the run can recover from it (recovery.ts): workers this driver started,
   *  spawned here (remote ranks are started by torchrun/srun), no stop requested, restarts left. */
  private checkRecoverable(e: unknown, owned: boolean, recoveries: Recovery[], failedAfter: number): void {
    if (!isRecoverable(e) || !owned || this.stopReason !== null || this.cfg.world.listen !== null) throw e
    checkRestartsLeft(e, {
      maxRestarts: this.cfg.recovery.max_restarts, newestStep: this.lastSaved?.step ?? this.resumeFrom?.state.step ?? 0,
      recoveries, failedAfter, runDir: this.dir,
    })
  }

  /** The training loop: plan → read bytes → send → record → evaluate/checkpoint when the plan
   *  says; the next step is planned and on the wire while the workers compute this one. */
  private async train(run: RunState, recorder: Recorder | null): Promise<void> {
    const cfg = this.cfg
    const pipe = new Pipeline(run.group, run.data, recorder, (plan, result) => this.stepDone(run, plan, result), cfg.log.pseudo_quality,
      cfg.data.reader === 'rank' ? resolve(cfg.data.root) : null)
    // The state after the newest step sent and not yet checkpointed: what a stop request saves.
    let unsaved: DriverState | null = null
    for (let planned = run.state.step; planned < run.stopAt && this.stopReason === null; planned++) {
      const plan = planStep(cfg, progressAt(cfg, run.perEpoch, planned), run.gen, run.planData)
      const snapshot = snapshotOf(plan, run.perEpoch, run.gen, run.state.best)
      await pipe.send(plan)
      const checkpoint = plan.checkpoint || plan.step === run.stopAt
      // Evaluations and checkpoints see the state after exactly this step: drain the pipeline.
      await pipe.drain(plan.evaluate || checkpoint ? 0 : 1)
      if (plan.evaluate) await this.evaluate(run, plan.step, snapshot)
      if (checkpoint) await this.save(run, 'latest', snapshot)
      unsaved = checkpoint ? null : snapshot
    }
    await pipe.drain(0)
    if (this.stopReason !== null && unsaved) {
      this.log(`stopping (${this.stopReason}): the steps in flight are done; writing a checkpoint at step ${unsaved.step}`)
      await this.save(run, 'latest', unsaved)
    }
  }

  /** The world.size ranks: spawned here, or, with world.listen, gathered as they connect. */
  private async startGroup(): Promise<WorkerGroup> {
    const w = this.cfg.world
    if (w.listen === null) {
      return WorkerGroup.start({
        size: w.size, devices: w.devices, python: this.cfg.worker.python ?? undefined, device: this.cfg.worker.device,
        transport: this.cfg.worker.transport, decodeThreads: this.cfg.worker.decode_threads ?? undefined, log: 'silent',
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
  private async start(group: WorkerGroup, data: RunData, recorder: Recorder | null, from: LoadedCheckpoint | null = this.resumeFrom, recovering = false): Promise<RunState> {
    const cfg = this.cfg
    const ck = from
    const settings = workerSettings(cfg, ck ? null : await this.pretrained(), { runDir: this.runDir })
    recorder?.write('configure', settings)
    await group.all('configure', () => settings, { timeoutMs: 600_000 })
    // Restarted local ranks read the data root the check already passed.
    if (cfg.data.reader === 'rank' && !recovering) await checkRankData(group, this.identity!.entries)
    let state = initialState(cfg, data)
    if (ck) {
      const saved = ck.workerFiles.length
      if (saved !== group.size) {
        this.log(`warning: ${ck.dir} was saved by ${saved} ${saved === 1 ? 'worker' : 'ranks'} and this run has ${group.size}: every rank loads rank 0's state, and the per-step losses will differ from those of an uninterrupted run at world size ${saved}`)
      }
      await group.all('load', (r) => ({ path: saved === group.size ? ck.workerFiles[r]! : ck.workerFile }), { timeoutMs: 600_000 })
      state = ck.state
      if (!recovering) this.log(`resumed ${this.runDir} at step ${state.step} (epoch ${state.epoch}) from ${ck.dir}`)
    }
    const perEpoch = stepsPerEpoch(cfg, data.labeled.length)
    const total = perEpoch * cfg.sampling.epochs
    return {
      group, data, state, perEpoch, total, gen: generators(cfg, data, state),
      stopAt: this.opts.stopAfter === undefined ? total : Math.min(total, state.step + this.opts.stopAfter),
      planData: { ...data.sizes, labelLut: data.dataset.labelLut },
      metrics: join(this.runDir, 'metrics.jsonl'), started: Date.now(), firstStep: state.step, done: state.step, best: null, last: null,
      progress: this.progress(total, perEpoch),
    }
  }

  private guard: NonFiniteGuard | null = null

  private stepDone(run: RunState, plan: StepPlan, result: OpResult<'train_step'>): void {
    // A step the worker did not apply (non-finite loss or gradients): counted, logged, and
    // skipped, rolled back or the run stopped as guard.non_finite says (ts/experiment/guard.ts).
    this.guard ??= new NonFiniteGuard(this.cfg.guard, () => this.lastSaved ?? this.resumedCheckpoint(), run.group, (l) => this.log(l))
    let fields: GuardFields
    try {
      fields = this.guard.onStep(plan, result)
    } catch (e) {
      if (e instanceof NonFiniteStepError) appendLine(run.metrics, { ...stepEvent(plan, result), skipped: true, non_finite: e.nonFinite, guard: 'stop' } as StepEvent)
      throw e
    }
    const ev: StepEvent & GuardFields = { ...stepEvent(plan, result), ...fields }
    appendLine(run.metrics, ev)
    this.board?.step(ev)
    this.emit('step', ev)
    run.done = plan.step
    run.progress?.step(ev)
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
    run.progress?.evaluated(step)
    run.last = ev
    appendLine(run.metrics, ev)
    await this.board?.eval(ev, run.group, run.data, run.perEpoch)
    this.emit('eval', ev)
    if (isScore(ev.miou) && (!run.state.best || ev.miou > run.state.best.miou)) {
      run.state.best = { miou: ev.miou, step, epoch: ev.epoch }
      run.best = ev
      await this.save(run, 'best', snapshot)
    }
    const best = run.state.best
    const score = isScore(ev.miou) ? (ev.miou * 100).toFixed(2) : 'NaN (a class absent from prediction and ground truth, eval.miou_reduce mean)'
    this.log(`epoch ${ev.epoch} step ${step}: ${ev.model} mIoU ${score} (best ${best ? `${(best.miou * 100).toFixed(2)} at epoch ${best.epoch}` : 'none yet'})`)
  }

  private async save(run: RunState, name: 'latest' | 'best', snapshot: DriverState): Promise<void> {
    const dir = await saveCheckpoint(join(this.runDir, 'checkpoints', name), run.group, { ...snapshot, best: run.state.best, wall_ms: this.wallMs(run) }, this.cfg, this.identity ?? undefined)
    const files = workerFileNames(run.group.size).map((f) => join(dir, f))
    this.lastSaved = { dir, step: snapshot.step, workerFile: files[0]!, workerFiles: files }
  }
  private resumedCheckpoint(): SavedCheckpoint | null {
    const ck = this.resumeFrom
    return ck && { dir: ck.dir, step: ck.state.step, workerFile: ck.workerFile, workerFiles: ck.workerFiles }
  }
  /** The newest checkpoint this invocation saved (what a rollback loads, what recovery counts from). */
  private lastSaved: SavedCheckpoint | null = null

  private summarize(run: RunState): RunSummary {
    run.progress?.done()
    const logged = evalsFromMetrics(run.metrics)
    const summary: RunSummary = {
      name: this.cfg.name, run_dir: this.runDir, steps: run.done, epochs: Math.floor(run.done / run.perEpoch),
      wall_minutes: this.wallMs(run) / 60_000, last: run.last ?? logged.last, best: run.best ?? logged.best,
      splits: run.data.splits, config_sha: sha(JSON.stringify(this.cfg)), skipped: run.data.skipped,
      guard: guardSummary(run.metrics),
      recoveries: recoveriesFrom(run.metrics),
      stopped: this.stopReason,
      finished: run.done === run.total,
    }
    writeFileSync(join(this.runDir, 'summary.json'), JSON.stringify(summary, null, 2))
    return summary
  }

  private progress(total: number, perEpoch: number): Progress | null {
    const tty = !!process.stderr.isTTY
    if (this.opts.progress === false || (this.opts.progress === undefined && !tty && this.cfg.log.progress_s === 0)) return null
    const evalSteps = Array.from({ length: total }, (_, i) => i + 1).filter((s) => evaluatesAfter(this.cfg, perEpoch, s))
    return new Progress({ total, evalSteps, tty, everyMs: this.cfg.log.progress_s * 1000, write: (t) => process.stderr.write(t) })
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
  progress: Progress | null
}

/** Remove what a new run wrote before its workers started (config.json, splits.json, an empty
 *  checkpoints/), and its directory when that leaves it empty. */
function discardNewRun(dir: string): void {
  for (const f of ['config.json', 'splits.json', 'metrics.jsonl']) rmSync(join(dir, f), { force: true })
  for (const d of ['checkpoints', '.']) {
    try { rmdirSync(join(dir, d)) } catch { /* not empty (or gone): kept */ }
  }
}

/** The configuration with worker.python unset (said through `note` when it was set). */
function withoutInterpreter(config: unknown, note: (python: string) => void): unknown {
  const worker = (config as { worker?: { python?: unknown } } | null)?.worker
  if (worker && typeof worker.python === 'string') {
    note(worker.python)
    worker.python = null
  }
  return config
}

function sha(text: string): string {
  // Small and dependency-free is enough for a config fingerprint.
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return (h >>> 0).toString(16).padStart(8, '0')
}

export { readCheckpoint, type EvalEvent, type StepEvent }
