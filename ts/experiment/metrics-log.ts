// metrics.jsonl: one line per step (what the plan resolved, what the worker measured), per
// evaluation and, with several ranks, per check that the ranks hold the same networks (type
// 'replicas', before each evaluation); and the progress line on a terminal.
import { appendFileSync, existsSync, readFileSync } from 'node:fs'
import type { StepPlan } from '../policy/plan.ts'
import type { OpResult } from '../wire/ops/index.ts'
import type { EvalEvent, ReplicaEvent } from './evaluate.ts'

export interface StepEvent {
  type: 'step'; step: number; epoch: number; lr: number; head_lr: number; ema_decay: number; weak_threshold: number
  params: StepPlan['params']; total: number; losses: Record<string, { value: number; weight: number }>
  stats: OpResult<'train_step'>['stats']; time_ms: Record<string, number>
}

export function stepEvent(plan: StepPlan, r: OpResult<'train_step'>): StepEvent {
  return {
    type: 'step', step: plan.step, epoch: plan.epoch, lr: plan.lr, head_lr: plan.head_lr, ema_decay: plan.ema.decay,
    weak_threshold: plan.policy.weak_threshold, params: plan.params,
    total: r.total, losses: r.losses, stats: r.stats, time_ms: r.time_ms,
  }
}

export function appendLine(metrics: string, event: StepEvent | EvalEvent | ReplicaEvent): void {
  appendFileSync(metrics, JSON.stringify(event) + '\n')
}

function readEvals(metrics: string): EvalEvent[] {
  if (!existsSync(metrics)) return []
  return readFileSync(metrics, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'eval')
}

/** The best and the last evaluation a run's metrics hold. */
export function evalsFromMetrics(metrics: string): { best: EvalEvent | null; last: EvalEvent | null } {
  const evals = readEvals(metrics)
  return { best: evals.reduce<EvalEvent | null>((b, e) => (!b || e.miou > b.miou ? e : b), null), last: evals.at(-1) ?? null }
}

export function progressLine(step: number, total: number, t0: number, startStep: number, ev: StepEvent): void {
  const rate = (step - startStep) / Math.max(1e-3, (Date.now() - t0) / 1000)
  const eta = rate > 0 ? (total - step) / rate : 0
  const mm = (s: number) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`
  const losses = Object.entries(ev.losses).map(([k, v]) => `${k} ${v.value.toFixed(3)}`).join(' ')
  const width = 24
  const filled = Math.round((step / total) * width)
  process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${total} ep ${ev.epoch} ${losses} ${rate.toFixed(1)} it/s ETA ${mm(eta)}   `)
}
