// metrics.jsonl: one line per step (what the plan resolved, what the worker measured), per
// evaluation and, with several ranks, per check that the ranks hold the same networks (type
// 'replicas', before each evaluation) and per recovery from a dead worker (type 'recovery').
import { appendFileSync, closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import type { StepPlan } from '../policy/plan.ts'
import type { OpResult } from '../wire/ops/index.ts'
import type { EvalEvent } from './evaluate.ts'
import { pseudoQuality, type PseudoQuality } from './pseudo-quality.ts'

export interface StepEvent {
  type: 'step'; step: number; epoch: number; lr: number; head_lr: number; ema_decay: number; weak_threshold: number
  params: StepPlan['params']; total: number; losses: Record<string, { value: number; weight: number }>
  stats: OpResult<'train_step'>['stats']; time_ms: Record<string, number>
  /** Against the unlabeled images' ground truth, when it exists (log.pseudo_quality). */
  pseudo_quality?: PseudoQuality
}

export function stepEvent(plan: StepPlan, r: OpResult<'train_step'>): StepEvent {
  const quality = r.pseudo_quality ? pseudoQuality(r.pseudo_quality) : null
  return {
    type: 'step', step: plan.step, epoch: plan.epoch, lr: plan.lr, head_lr: plan.head_lr, ema_decay: plan.ema.decay,
    weak_threshold: plan.policy.weak_threshold, params: plan.params,
    total: r.total, losses: r.losses, stats: r.stats, time_ms: r.time_ms,
    ...(quality ? { pseudo_quality: quality } : {}),
  }
}

export function appendLine(metrics: string, event: { type: string }): void {
  appendFileSync(metrics, JSON.stringify(event) + '\n')
}

/** Cut a run's metrics back to what a checkpoint at `step` had seen, on resume: every line about a
 *  later step goes (the resumed run logs those steps again), and so does a torn last line of a
 *  killed driver. Written to a temporary file, fsynced and renamed. Returns what was dropped. */
export function cutMetrics(metrics: string, step: number): { dropped: number; torn: number } {
  if (!existsSync(metrics)) return { dropped: 0, torn: 0 }
  const keep: string[] = []
  let dropped = 0
  let torn = 0
  for (const line of readFileSync(metrics, 'utf8').split('\n')) {
    if (!line.trim()) continue
    let ev: { step?: unknown }
    try {
      ev = JSON.parse(line)
    } catch {
      torn++
      continue
    }
    if (typeof ev?.step === 'number' && ev.step > step) dropped++
    else keep.push(line)
  }
  if (dropped === 0 && torn === 0) return { dropped, torn }
  const tmp = `${metrics}.tmp`
  const fd = openSync(tmp, 'w')
  try {
    writeSync(fd, keep.map((l) => `${l}\n`).join(''))
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, metrics)
  return { dropped, torn }
}

/** How many training steps a run's metrics record (0: the run never got past its start). */
export function loggedSteps(metrics: string): number {
  if (!existsSync(metrics)) return 0
  let n = 0
  for (const line of readFileSync(metrics, 'utf8').split('\n')) {
    try {
      if (line && JSON.parse(line).type === 'step') n++
    } catch { /* a torn line */ }
  }
  return n
}

function readEvals(metrics: string): EvalEvent[] {
  if (!existsSync(metrics)) return []
  return readFileSync(metrics, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'eval')
}

/** The best and the last evaluation a run's metrics hold. */
export function evalsFromMetrics(metrics: string): { best: EvalEvent | null; last: EvalEvent | null } {
  const evals = readEvals(metrics)
  return { best: bestEval(evals), last: evals.at(-1) ?? null }
}

/** The evaluation with the highest mIoU; one without a number (NaN, null in JSON: eval.miou_reduce
 *  mean with an absent class) is never the best. */
export function bestEval<E extends { miou: number | null }>(evals: readonly E[]): E | null {
  return evals.reduce<E | null>((b, e) => (isScore(e.miou) && (!b || e.miou > b.miou!) ? e : b), null)
}

export function isScore(x: number | null | undefined): x is number {
  return typeof x === 'number' && Number.isFinite(x)
}
