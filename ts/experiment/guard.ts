// The driver's half of the non-finite guard (issue 10, item 2). The worker never applies a step
// whose loss or gradients are not finite (py/prcl_worker/train/guard.py: no optimiser step, no
// teacher update, BatchNorm statistics put back; every rank decides the same) and answers
// `skipped: true` with the names of what was not finite. Here each such step is counted, logged
// in metrics.jsonl (the step event carries `skipped`, `non_finite` and what the guard did) and
// handled as `guard.non_finite` says:
//
// * 'skip': go on with the next step;
// * 'rollback': every rank loads the newest checkpoint's worker state (the `load` op, as a resume
//   does), then the run goes on with the next step. The driver's step counter, samplers and
//   generators keep going (they are not rewound: the run does not repeat the steps since that
//   checkpoint, it continues from the checkpoint's weights). A step already on the wire when the
//   bad reply arrived (the pipeline keeps one in flight) is computed before the load, so the
//   load replaces its update too. Without any checkpoint yet, the step is skipped instead (logged);
// * 'stop': the run ends at the first such step, with an error naming it.
//
// Whatever the policy, more than `max_consecutive` such steps in a row end the run. Under amp
// fp16 a step whose only fault is overflowing gradients is the grad scaler's ordinary business (it
// skips the step and halves its scale, as it does early in every fp16 run): logged
// (`skipped: true`, `guard: 'grad_scaler'`) but neither counted against the policy nor ending a
// streak. A checkpoint never holds non-finite weights: the skipped steps are not applied, and the
// worker's `save` refuses a model holding NaN or inf.
import { existsSync, readFileSync } from 'node:fs'
import type { ExperimentConfig } from '../config/schema.ts'
import type { StepPlan } from '../policy/plan.ts'
import type { OpResult } from '../wire/ops/index.ts'
import type { WorkerGroup } from '../worker/group.ts'

type GuardConfig = ExperimentConfig['guard']

/** What a step event carries about the guard (nothing for an applied step). */
export interface GuardFields {
  skipped?: true
  non_finite?: string[]
  /** What the driver did about it: the policy's action, or the fp16 grad scaler's own skip. */
  guard?: 'skip' | 'rollback' | 'stop' | 'grad_scaler'
  /** The checkpoint whose worker state every rank loaded (guard 'rollback'). */
  rollback?: { checkpoint: string; step: number }
}

export interface GuardSummary {
  /** Steps not applied because their loss or gradients were not finite (fp16 overflows not included). */
  skipped: number
  rollbacks: number
  /** amp fp16: steps the grad scaler skipped for overflowing gradients. */
  grad_scaler_skipped: number
}

export class NonFiniteStepError extends Error {
  constructor(message: string, readonly step: number, readonly nonFinite: string[]) {
    super(message)
    this.name = 'NonFiniteStepError'
  }
}

/** A checkpoint as the guard needs it: where, its step, each rank's state file. */
export interface SavedCheckpoint { dir: string; step: number; workerFile: string; workerFiles: string[] }

export class NonFiniteGuard {
  private consecutive = 0
  private rollbackFailure: unknown = null

  /** `lastCheckpoint`: the newest checkpoint this driver saved or resumed from (known, so a
   *  rollback needs no search or hash on the event loop while the workers run). */
  constructor(private cfg: GuardConfig, private lastCheckpoint: () => SavedCheckpoint | null, private group: WorkerGroup, private log: (line: string) => void) {}

  /** The guard's fields for this step's event; throws NonFiniteStepError when the run must stop
   *  (or an earlier rollback's load failed). */
  onStep(plan: StepPlan, r: OpResult<'train_step'>): GuardFields {
    if (this.rollbackFailure) throw this.rollbackFailure
    if (!r.skipped) {
      this.consecutive = 0
      return {}
    }
    const nonFinite = r.non_finite
    if (r.grad_scale !== null && nonFinite.length > 0 && nonFinite.every((n) => n === 'gradients')) {
      return { skipped: true, non_finite: nonFinite, guard: 'grad_scaler' }
    }
    this.consecutive++
    const what = `step ${plan.step}: not finite: ${nonFinite.join(', ')}; the step was not applied`
    if (this.cfg.non_finite === 'stop') {
      throw new NonFiniteStepError(`${what}, and guard.non_finite is 'stop': the run stops here. ${this.resumeHint()}`, plan.step, nonFinite)
    }
    if (this.consecutive > this.cfg.max_consecutive) {
      throw new NonFiniteStepError(`${what}; ${this.consecutive} non-finite steps in a row, more than guard.max_consecutive = ${this.cfg.max_consecutive}: the run stops here. ${this.resumeHint()}`, plan.step, nonFinite)
    }
    if (this.cfg.non_finite === 'rollback') {
      const ck = this.lastCheckpoint()
      if (ck) {
        const saved = ck.workerFiles.length
        const load = this.group.all('load', (rank) => ({ path: saved === this.group.size ? ck.workerFiles[rank]! : ck.workerFile }), { timeoutMs: 600_000 })
        // Sent now, before the next step's request: every rank loads before it computes that step.
        load.catch((e: unknown) => {
          this.rollbackFailure = new Error(`step ${plan.step}: rolling back to ${ck.dir} failed: ${(e as Error).message}`)
        })
        this.log(`${what}; rolled back to ${ck.dir} (step ${ck.step}) and continuing with step ${plan.step + 1}`)
        return { skipped: true, non_finite: nonFinite, guard: 'rollback', rollback: { checkpoint: ck.dir, step: ck.step } }
      }
      this.log(`${what}; no checkpoint to roll back to yet: skipped instead`)
      return { skipped: true, non_finite: nonFinite, guard: 'skip' }
    }
    this.log(`${what}; skipped (${this.consecutive} in a row)`)
    return { skipped: true, non_finite: nonFinite, guard: 'skip' }
  }

  private resumeHint(): string {
    const ck = this.lastCheckpoint()
    return ck ? `The newest checkpoint, ${ck.dir} (step ${ck.step}), holds finite weights.` : 'No checkpoint was written yet.'
  }
}

/** The guard's counts over a run's metrics.jsonl (every invocation of a resumed run). */
export function guardSummary(metrics: string): GuardSummary {
  const out: GuardSummary = { skipped: 0, rollbacks: 0, grad_scaler_skipped: 0 }
  if (!existsSync(metrics)) return out
  for (const line of readFileSync(metrics, 'utf8').split('\n')) {
    if (!line.includes('"skipped":true')) continue
    const e = JSON.parse(line) as { type?: string } & GuardFields
    if (e.type !== 'step' || !e.skipped) continue
    if (e.guard === 'grad_scaler') out.grad_scaler_skipped++
    else out.skipped++
    if (e.guard === 'rollback') out.rollbacks++
  }
  return out
}
