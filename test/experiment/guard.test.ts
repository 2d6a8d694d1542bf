// The non-finite guard end to end (issue 10, item 2): a worker spawned with the test-only
// PRCL_TEST_NAN_STEPS=5,6 makes steps 5 and 6 NaN; the run skips them, rolls back or stops as
// guard.non_finite says, logs them in metrics.jsonl and counts them in summary.json, and `latest`
// is never written from non-finite weights (the worker's save refuses those: loading `latest`
// and saving it again proves it finite).
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { readCheckpoint } from '../../ts/experiment/checkpoint.ts'
import type { GuardFields } from '../../ts/experiment/guard.ts'
import { Experiment, type RunSummary, type StepEvent } from '../../ts/experiment/run.ts'
import { Worker } from '../../ts/worker/worker.ts'
import { tinyConfig, tinyDataset } from '../setup/tiny-run.ts'

let worker: Worker
let dir: string
let data: string

beforeAll(async () => {
  worker = await Worker.start({ device: 'cpu', log: 'silent', env: { PRCL_TEST_NAN_STEPS: '5,6' } })
  ;({ dir, data } = await tinyDataset('guard'))
}, 120_000)
afterAll(async () => {
  await worker?.close()
  rmSync(dir, { recursive: true, force: true })
})

function config(sets: string[] = []): ExperimentConfig {

  return tinyConfig(data, 'guard', sets)

}

type Event = StepEvent & GuardFields
let skipped: Event[] = []

async function run(name: string, sets: string[]): Promise<{ runDir: string; events: Event[]; summary: RunSummary | null; error: Error | null; logged: string[] }> {
  const runDir = join(dir, name)
  const logged: string[] = []
  const exp = new Experiment(config(sets), { runDir, worker, progress: false, log: (l) => logged.push(l) })
  let summary: RunSummary | null = null
  let error: Error | null = null
  try {
    summary = await exp.run()
  } catch (e) {
    error = e as Error
  }
  const events = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Event).filter((e) => e.type === 'step')
  return { runDir, events, summary, error, logged }
}

/** `latest` loads, and the worker (which refuses to save NaN or inf) saves it again. */
async function expectFiniteLatest(runDir: string, step: number): Promise<void> {
  const ck = readCheckpoint(join(runDir, 'checkpoints', 'latest'))
  expect(ck.state.step).toBe(step)
  await worker.call('load', { path: ck.workerFile })
  await worker.call('save', { path: join(runDir, 'finite-check.pt') })
  expect(existsSync(join(runDir, 'finite-check.pt'))).toBe(true)
}

describe('a step whose loss is not finite', () => {
  it('is skipped, logged with its non-finite terms and counted (guard skip, the default)', async () => {
    const r = await run('skip', [])
    expect(r.error).toBeNull()
    skipped = r.events
    expect(r.events.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    const bad = r.events.filter((e) => e.skipped)
    expect(bad.map((e) => e.step)).toEqual([5, 6])
    for (const e of bad) {
      expect(e.guard).toBe('skip')
      expect(e.non_finite).toEqual(expect.arrayContaining(['total', 'sup', 'gradients']))
      expect(e.total).toBeNull() // NaN in JSON
    }
    expect(r.events.filter((e) => !e.skipped).every((e) => Number.isFinite(e.total) && e.skipped === undefined)).toBe(true)
    expect(r.summary!.guard).toEqual({ skipped: 2, rollbacks: 0, grad_scaler_skipped: 0 })
    expect(JSON.parse(readFileSync(join(r.runDir, 'summary.json'), 'utf8')).guard.skipped).toBe(2)
    expect(r.logged.some((l) => /step 5: not finite: total, sup, .*gradients; the step was not applied; skipped/.test(l))).toBe(true)
    await expectFiniteLatest(r.runDir, 8)
  }, 300_000)

  it('stops the run at the first one (guard stop), leaving the last finite checkpoint', async () => {
    const r = await run('stop', ['guard.non_finite=stop'])
    expect(r.error?.message).toMatch(/step 5: not finite: total, sup.*guard\.non_finite is 'stop': the run stops here\. The newest checkpoint, .*best \(step 4\), holds finite weights/)
    expect(r.events.at(-1)).toMatchObject({ step: 5, skipped: true, guard: 'stop' })
    await expectFiniteLatest(r.runDir, 3)
  }, 300_000)

  it('stops after more than max_consecutive in a row', async () => {
    const r = await run('streak', ['guard.max_consecutive=1'])
    expect(r.error?.message).toMatch(/step 6: .*2 non-finite steps in a row, more than guard\.max_consecutive = 1/)
    expect(r.events.filter((e) => e.skipped).map((e) => [e.step, e.guard])).toEqual([[5, 'skip'], [6, 'stop']])
    await expectFiniteLatest(r.runDir, 3)
  }, 300_000)

  it('rolls every rank back to the newest checkpoint and goes on with the next step (guard rollback)', async () => {
    const r = await run('rollback', ['guard.non_finite=rollback'])
    expect(r.error).toBeNull()
    expect(r.events.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    const bad = r.events.filter((e) => e.skipped)
    // The newest checkpoint: `best` of epoch 1 (step 4), newer than `latest` (step 3).
    expect(bad.map((e) => [e.step, e.guard, e.rollback?.step])).toEqual([[5, 'rollback', 4], [6, 'rollback', 4]])
    expect(bad[0]!.rollback!.checkpoint).toBe(join(r.runDir, 'checkpoints', 'best'))
    expect(r.summary!.guard).toEqual({ skipped: 2, rollbacks: 2, grad_scaler_skipped: 0 })
    // The load happened: up to the checkpoint the runs agree; after it, the rolled-back worker
    // draws PRCL's anchors from the checkpoint's generator state, while the skipping run's
    // generator went on through steps 5 and 6.
    const losses = (events: Event[], step: number) => events.find((e) => e.step === step)!.losses
    for (const step of [1, 2, 3, 4]) expect(losses(r.events, step)).toEqual(losses(skipped, step))
    expect(losses(r.events, 7).prcl!.value).not.toBe(losses(skipped, 7).prcl!.value)
    await expectFiniteLatest(r.runDir, 8)
  }, 300_000)
})
