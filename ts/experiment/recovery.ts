// Supervised training: a worker (or rank) that dies or stalls does not end the run. The driver
// closes the group, starts it again, loads the newest valid checkpoint and goes on; every draw
// is seeded and checkpointed, so the finished model equals an uninterrupted run's. Each recovery
// is a `recovery` line in metrics.jsonl and listed in summary.json.
import { existsSync, readFileSync } from 'node:fs'
import { DeadlineError, messageOf, WorkerDiedError } from '../wire/errors.ts'
import { WorkerGroupError } from '../worker/group-issues.ts'

/** One recovery, as logged. `step`: the checkpoint's step the run continued from (its steps after
 *  that run again), so cutting the metrics back to a later resume keeps the line. */
export interface Recovery {
  type: 'recovery'
  step: number
  /** The last step whose reply had arrived when the failure was seen. */
  failed_after: number
  /** 1, 2, … within one invocation of the driver. */
  attempt: number
  reason: string
  checkpoint: string | null
  time: string
}

/** A failure the run recovers from: a worker or rank that died (exit, kill, missed heartbeats) or
 *  a request past its deadline (a stall). Not: a worker's error about a request (it would repeat),
 *  ranks that diverged, a non-finite step, a closed worker. */
export function isRecoverable(e: unknown): boolean {
  const died = (x: unknown) => x instanceof WorkerDiedError || x instanceof DeadlineError
  return died(e) || (e instanceof WorkerGroupError && died(e.cause))
}

/** Throws (naming the failure and the resume command) when no restart is left: more than
 *  `maxRestarts` recoveries would have continued from the same newest checkpoint. */
export function checkRestartsLeft(e: unknown, o: { maxRestarts: number; newestStep: number; recoveries: readonly Recovery[]; failedAfter: number; runDir: string }): void {
  const inARow = o.recoveries.filter((r) => r.step >= o.newestStep).length
  if (inARow < o.maxRestarts) return
  const why = o.maxRestarts === 0
    ? 'recovery.max_restarts is 0'
    : `the workers were restarted ${inARow} time${inARow === 1 ? '' : 's'} since the newest checkpoint (step ${o.newestStep}), recovery.max_restarts = ${o.maxRestarts}`
  const more = ` (after step ${o.failedAfter}); ${why}: the run stops here. Resume with: prcl train --resume ${o.runDir}`
  // The error itself, told what happened: its class (and a group error's ranks) stay.
  if (e instanceof Error) {
    e.message += more
    throw e
  }
  throw new Error(`${messageOf(e)}${more}`)
}

/** The recoveries a run's metrics.jsonl records (every invocation of a resumed run). */
export function recoveriesFrom(metrics: string): Recovery[] {
  if (!existsSync(metrics)) return []
  return readFileSync(metrics, 'utf8').split('\n').filter((l) => l.includes('"type":"recovery"')).map((l) => JSON.parse(l) as Recovery)
}
