// Pseudo-label quality: where the unlabeled images have ground truth (the synthetic dataset does),
// the driver sends it for analysis only. The run trains exactly as without it; each step logs the
// pseudo-labels' accuracy, mIoU and coverage above thresholds; no loss term may read it.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../ts/config/load.ts'
import { Experiment, type StepEvent } from '../../ts/experiment/run.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { closeTinyRun, sharedTinyRun, tinyConfig } from '../setup/tiny-run.ts'

let worker: Worker
let dir: string
let data: string

beforeAll(async () => {
  ;({ worker, dir, data } = await sharedTinyRun('quality'))
}, 120_000)
afterAll(async () => {
  await closeTinyRun({ worker, dir })
})

async function steps(name: string, sets: string[]): Promise<StepEvent[]> {
  const runDir = join(dir, name)
  await new Experiment(tinyConfig(data, 'quality', ['sampling.epochs=1', 'log.val_images=0', ...sets]), { runDir, worker, progress: false, log: () => undefined }).run()
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'step')
}

describe('pseudo-label quality', () => {
  it('is measured against the unlabeled ground truth without changing the training', async () => {
    const [on, off] = [await steps('on', []), await steps('off', ['log.pseudo_quality=false'])]
    expect(on.map((s) => [s.step, s.total, s.losses])).toEqual(off.map((s) => [s.step, s.total, s.losses]))
    expect(off.every((s) => s.pseudo_quality === undefined)).toBe(true)
    for (const s of on) {
      const q = s.pseudo_quality!
      expect(q.accuracy).toBeGreaterThanOrEqual(0)
      expect(q.accuracy).toBeLessThanOrEqual(1)
      expect(q.thresholds).toEqual([0.5, 0.7, 0.8, 0.9, 0.95])
      // Coverage falls as the threshold rises; pixels counted per class add up to all of them.
      for (let i = 1; i < q.coverage.length; i++) expect(q.coverage[i]!).toBeLessThanOrEqual(q.coverage[i - 1]!)
      expect(q.per_class).toHaveLength(5)
    }
    // Two crops of 32² per step, every pixel with a class or ignore: the counts are pixels.
    const pixels = on[0]!.pseudo_quality!.per_class.reduce((a, b) => a + b, 0)
    expect(pixels).toBeGreaterThan(0)
    expect(pixels).toBeLessThanOrEqual(2 * 32 * 32)
  }, 300_000)

  it('a loss term that reads the ground truth is refused by the configuration check', () => {
    expect(() => loadConfig('synthetic-demo', ['loss.terms.unsup.inputs.pseudo="batch.lbl_u"'])).toThrow(
      /loss\.terms\.\d+\.inputs\.pseudo = "batch\.lbl_u": is the unlabeled images' ground truth, sent only to measure pseudo-label quality .*no loss term may read it/)
  })
})
