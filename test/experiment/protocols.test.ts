// Evaluation protocols: test-time augmentation and the released random crop, each result naming
// how it was measured (metrics.jsonl, summary.json, prcl eval) — with a real worker.
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadRunData } from '../../ts/experiment/data.ts'
import { evaluateOn, loadCheckpointWorker } from '../../ts/experiment/evaluate.ts'
import { Experiment } from '../../ts/experiment/run.ts'
import { ROOT } from '../../ts/paths.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { closeTinyRun, sharedTinyRun, tinyConfig } from '../setup/tiny-run.ts'

const tiny: { worker?: Worker; dir?: string; data?: string } = {}
let runDir: string
beforeAll(async () => {
  Object.assign(tiny, await sharedTinyRun('protocols'))
  runDir = join(tiny.dir!, 'crop-run')
  // Trained and evaluated with the released protocol, crops of 24² (not the 32² training crop).
  const cfg = tinyConfig(tiny.data!, 'crop-run', ['eval.protocol=prcl_random_crop', 'eval.window=[24,24]'])
  await new Experiment(cfg, { runDir, worker: tiny.worker, progress: false, log: () => undefined }).run()
}, 300_000)
afterAll(() => closeTinyRun(tiny))

describe('the released random-crop protocol', () => {
  it('is recorded with every evaluation and in summary.json', () => {
    const evals = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'eval')
    expect(evals).toHaveLength(2)
    for (const e of evals) expect(e.eval_protocol).toEqual({ kind: 'prcl_random_crop', crop: [24, 24], scales: [1], flip: false })
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'))
    expect(summary.best.eval_protocol.kind).toBe('prcl_random_crop')
    expect(summary.last.protocol).toBe('prcl_random_crop')
  })

  it('crops are drawn from (seed, step): the same evaluation again, others elsewhere; only crop pixels count', async () => {
    const { worker, checkpoint } = await loadCheckpointWorker(runDir, 'latest', { worker: tiny.worker })
    expect(worker).toBe(tiny.worker)
    const cfg = checkpoint.config
    const data = await loadRunData(cfg, { check: 'none', lists: ['val'] })
    const a = await evaluateOn(worker, cfg, data, 8, 2)
    const again = await evaluateOn(worker, cfg, data, 8, 2)
    const other = await evaluateOn(worker, cfg, data, 9, 2)
    expect(again.confusion).toEqual(a.confusion)
    expect(other.confusion).not.toEqual(a.confusion)
    // 6 val images of 40², one 24² crop each (the synthetic labels ignore some boundary pixels)
    const pixels = (cm: number[]) => cm.reduce((s, v) => s + v, 0)
    expect(pixels(a.confusion)).toBeLessThanOrEqual(6 * 24 * 24)
    expect(pixels(a.confusion)).toBeGreaterThan(0.5 * 6 * 24 * 24)
    const whole = await evaluateOn(worker, { ...cfg, eval: { ...cfg.eval, protocol: 'whole' } }, data, 8, 2)
    expect(pixels(whole.confusion)).toBeGreaterThan(6 * 32 * 32)
    expect(whole.eval_protocol).toEqual({ kind: 'whole', scales: [1], flip: false })
    const tta = await evaluateOn(worker, { ...cfg, eval: { ...cfg.eval, protocol: 'whole', scales: [0.75, 1.25], flip: true } }, data, 8, 2)
    expect(pixels(tta.confusion)).toBe(pixels(whole.confusion))
    expect(tta.eval_protocol).toEqual({ kind: 'whole', scales: [0.75, 1.25], flip: true })
  }, 120_000)
})

describe('prcl eval', () => {
  const prcl = (args: string[]) => promisify(execFile)(process.execPath, [join(ROOT, 'ts/cli/prcl.mjs'), ...args], { cwd: ROOT, encoding: 'utf8' })
    .then((r) => ({ code: 0, ...r }), (e: { code: number; stdout: string; stderr: string }) => e)

  it('another protocol and test-time augmentation for a trained run, named in the result', async () => {
    const r = await prcl(['eval', '--run', runDir, '--model', 'teacher', '--protocol', 'sliding', '--scales', '0.75,1,1.25', '--flip', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout)
    expect(out.results[0].eval_protocol).toEqual({ kind: 'sliding', window: [24, 24], stride: [16, 16], scales: [0.75, 1, 1.25], flip: true })
    const text = await prcl(['eval', '--run', runDir, '--model', 'teacher', '--flip'])
    expect(text.stdout).toMatch(/teacher: mIoU \d+\.\d\d \(random 24×24 crops \(as released\), scales 1 \+ flip;/)
    const bad = await prcl(['eval', '--run', runDir, '--scales', '1,9'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--scales 1,9: expected 1 to 8 comma-separated numbers from 0.25 to 4 (e.g. 0.75,1,1.25); not one: 9')
  }, 180_000)
})
