// Supervised training (ts/experiment/recovery.ts): workers SIGKILLed or frozen (SIGSTOP) at
// random steps are replaced, the newest checkpoint is loaded and the run goes on to the same
// per-step losses and the same final weights as an uninterrupted run; at world size 2 a killed
// rank restarts the whole group; restarts without a newer checkpoint are bounded.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { verifyCheckpoint } from '../../ts/experiment/checkpoint.ts'
import type { Recovery } from '../../ts/experiment/recovery.ts'
import { Experiment, type RunSummary, type StepEvent } from '../../ts/experiment/run.ts'
import { workerSettings } from '../../ts/experiment/settings.ts'
import type { WorkerGroup } from '../../ts/worker/group.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { closeTinyRun, sharedTinyRun, tinyConfig } from '../setup/tiny-run.ts'

let dir: string
let data: string
let shared: Worker

beforeAll(async () => {
  ;({ worker: shared, dir, data } = await sharedTinyRun('recovery'))
}, 120_000)
afterAll(async () => {
  await closeTinyRun({ worker: shared, dir })
})

function config(sets: string[] = []): ExperimentConfig {

  return tinyConfig(data, 'recovery', ['sampling.epochs=3', 'checkpoint.every_steps=2', 'worker.device=cpu', 'worker.threads=1', ...sets])

}

/** A run whose workers the driver starts; `onStep` may hurt them (it sees the current group). */
async function run(cfg: ExperimentConfig, runDir: string, onStep: (e: StepEvent, group: WorkerGroup) => void = () => undefined) {
  const exp = new Experiment(cfg, { runDir, progress: false, log: () => undefined })
  const steps: StepEvent[] = []
  const recoveries: Recovery[] = []
  exp.on('step', (e: StepEvent) => { steps.push(e); onStep(e, exp.workers!) })
  exp.on('recovery', (r: Recovery) => recoveries.push(r))
  const summary: RunSummary = await exp.run()
  return { summary, steps, recoveries }
}

/** The final teacher, student and head of a run, by the sha256 of their parameters. */
async function finalHashes(cfg: ExperimentConfig, runDir: string): Promise<Record<string, string>> {
  const ck = await verifyCheckpoint(join(runDir, 'checkpoints', 'latest'))
  await shared.call('configure', workerSettings(cfg, null, { runDir }), { timeoutMs: 120_000 })
  await shared.call('load', { path: ck.workerFile }, { timeoutMs: 120_000 })
  return (await shared.call('state_hash', { networks: ['teacher', 'student', 'head'] })).body.hashes
}

const lossesOf = (steps: StepEvent[]) => new Map(steps.map((e) => [e.step, e.total]))
const logged = (runDir: string) => readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))

/** `n` distinct steps in 1..max−1 from a seeded draw (mulberry32). */
function drawSteps(seed: number, n: number, max: number): number[] {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const out = new Set<number>()
  while (out.size < n) out.add(1 + Math.floor(next() * (max - 1)))
  return [...out].sort((x, y) => x - y)
}

describe('a run whose workers die or stall', () => {
  it('three faults at random steps (SIGKILL, SIGSTOP, SIGKILL): same losses and final weights as without', async () => {
    const whole = await run(config(), join(dir, 'whole'))
    expect(whole.summary.steps).toBe(12)
    const faults = drawSteps(Number(process.env.PRCL_TEST_SEED ?? 7), 3, 12)
    const signals = ['SIGKILL', 'SIGSTOP', 'SIGKILL'] as const
    const hurt = new Set<number>()
    const pids: number[] = []
    const faulty = await run(config(), join(dir, 'faulty'), (e, group) => {
      const i = faults.indexOf(e.step)
      if (i < 0 || hurt.has(e.step)) return
      hurt.add(e.step)
      pids.push(group.pids[0]!)
      // The next step is already in flight: the worker dies (or freezes) in the middle of it.
      group.workers[0]!.kill(signals[i])
    })
    expect(hurt.size, `faults at steps ${faults}`).toBe(3)
    expect(faulty.recoveries).toHaveLength(3)
    expect(faulty.summary.recoveries.map((r) => r.attempt)).toEqual([1, 2, 3])
    expect(faulty.recoveries[1]!.reason).toMatch(/heartbeat|stall/)
    for (const r of faulty.recoveries) expect(r.step % 2).toBe(0) // from a checkpoint (every 2 steps)
    // Every step once in metrics.jsonl, with the uninterrupted run's loss; the recoveries logged.
    const lines = logged(join(dir, 'faulty'))
    expect(lines.filter((l) => l.type === 'step').map((l) => [l.step, l.total])).toEqual(whole.steps.map((e) => [e.step, e.total]))
    expect(lines.filter((l) => l.type === 'recovery')).toHaveLength(3)
    // Steps run again after a recovery give the losses they gave the first time.
    const ref = lossesOf(whole.steps)
    for (const e of faulty.steps) expect(e.total, `step ${e.step}`).toBe(ref.get(e.step))
    expect(faulty.summary.best?.miou).toBe(whole.summary.best?.miou)
    expect(await finalHashes(config(), join(dir, 'faulty'))).toEqual(await finalHashes(config(), join(dir, 'whole')))
    // No worker of the run is left: the killed ones, the frozen one and the last group's.
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false)
  }, 600_000)

  it('at world size 2 a killed rank restarts the group: same losses as without', async () => {
    const cfg = config(['world.size=2', 'teacher.bn_mode=eval', 'ema.buffers=ema', 'sampling.epochs=2'])
    const whole = await run(cfg, join(dir, 'whole2'))
    let killed = false
    const faulty = await run(cfg, join(dir, 'faulty2'), (e, group) => {
      if (e.step !== 5 || killed) return
      killed = true
      group.workers[1]!.kill('SIGKILL')
    })
    expect(faulty.recoveries).toHaveLength(1)
    expect(faulty.recoveries[0]).toMatchObject({ step: 4, attempt: 1 })
    expect(faulty.recoveries[0]!.reason).toMatch(/rank 1 of 2/)
    expect(logged(join(dir, 'faulty2')).filter((l) => l.type === 'step').map((l) => [l.step, l.total])).toEqual(whole.steps.map((e) => [e.step, e.total]))
  }, 600_000)

  it('more than recovery.max_restarts restarts without a newer checkpoint stop the run, saying how to resume', async () => {
    const runDir = join(dir, 'bounded')
    let kills = 0
    const err = await run(config(['recovery.max_restarts=1', 'checkpoint.every_steps=4']), runDir, (e, group) => {
      // Step 5 is reached twice: once, and again after the recovery from step 4.
      if (e.step === 5 && kills < 2) { kills++; group.workers[0]!.kill('SIGKILL') }
    }).catch((e: Error) => e)
    expect(kills).toBe(2)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).toMatch(/restarted 1 time since the newest checkpoint \(step 4\), recovery\.max_restarts = 1: the run stops here\. Resume with: prcl train --resume /)
    const rest = await new Experiment(undefined, { runDir, resume: true, progress: false, log: () => undefined }).run()
    expect(rest.steps).toBe(12)
    expect(rest.recoveries).toHaveLength(1)
  }, 600_000)
})

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
