// A run's TensorBoard event files, read back with the tensorboard package's own reader
// (EventAccumulator): every step's scalars equal metrics.jsonl's, every evaluation's mIoU and
// per-class IoU, and the picture strips (input | ground truth | prediction | σ²) as PNGs.
import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Experiment } from '../../ts/experiment/run.ts'
import { EventWriter } from '../../ts/report/tensorboard.ts'
import { findPython } from '../../ts/worker/python.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { closeTinyRun, sharedTinyRun, tinyConfig } from '../setup/tiny-run.ts'

let worker: Worker
let dir: string
let data: string

beforeAll(async () => {
  ;({ worker, dir, data } = await sharedTinyRun('tensorboard'))
}, 120_000)
afterAll(async () => {
  await closeTinyRun({ worker, dir })
})

/** What tensorboard's EventAccumulator reads from `logdir`: scalars by tag, images by tag. */
async function readBack(logdir: string): Promise<{ scalars: Record<string, Array<[number, number]>>; images: Record<string, Array<[number, number, number, string]>> }> {
  const { python } = await findPython()
  const script = `
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
ea.Reload()
tags = ea.Tags()
print(json.dumps({
  "scalars": {t: [[e.step, e.value] for e in ea.Scalars(t)] for t in tags["scalars"]},
  "images": {t: [[e.step, e.width, e.height, e.encoded_image_string[:8].hex()] for e in ea.Images(t)] for t in tags["images"]},
}))`
  // Not execFileSync: a blocked event loop would miss the shared worker's heartbeats.
  return JSON.parse((await promisify(execFile)(python, ['-c', script, logdir], { encoding: 'utf8' })).stdout)
}

describe('TensorBoard event files', () => {
  it('a run writes every step\'s scalars, every evaluation and its pictures, as TensorBoard reads them', async () => {
    const runDir = join(dir, 'run')
    await new Experiment(tinyConfig(data, 'tb', ['log.val_images=2']), { runDir, worker, progress: false, log: () => undefined }).run()
    expect(readdirSync(runDir).filter((f) => f.startsWith('events.out.tfevents.'))).toHaveLength(1)
    const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    const steps = lines.filter((l) => l.type === 'step')
    const evals = lines.filter((l) => l.type === 'eval')
    const tb = await readBack(runDir)
    const f32 = (x: number) => Math.fround(x)
    expect(tb.scalars['loss/total']).toEqual(steps.map((s) => [s.step, f32(s.total)]))
    for (const term of Object.keys(steps[0].losses)) {
      expect(tb.scalars[`loss/${term}`]).toEqual(steps.map((s) => [s.step, f32(s.losses[term].value)]))
      expect(tb.scalars[`weight/${term}`]).toEqual(steps.map((s) => [s.step, f32(s.losses[term].weight)]))
    }
    expect(tb.scalars['lr/backbone']).toEqual(steps.map((s) => [s.step, f32(s.lr)]))
    expect(tb.scalars['threshold/weak']).toEqual(steps.map((s) => [s.step, f32(s.weak_threshold)]))
    expect(tb.scalars['pseudo/mask_ratio']).toEqual(steps.map((s) => [s.step, f32(s.stats.mask_ratio)]))
    expect(Object.keys(tb.scalars)).toEqual(expect.arrayContaining(['teacher/ema_decay', 'time_ms/decode', 'time_ms/compute', 'prcl/hard_pixels']))
    expect(tb.scalars['eval/teacher/miou']).toEqual(evals.map((e) => [e.step, f32(e.miou)]))
    expect(tb.scalars['worker/rank0/rss_mb']?.map(([s]) => s)).toEqual(evals.map((e) => e.step))
    // The synthetic unlabeled images have ground truth: the pseudo-labels' quality, every step.
    expect(tb.scalars['pseudo/accuracy']).toEqual(steps.map((s) => [s.step, f32(s.pseudo_quality.accuracy)]))
    expect(tb.scalars['pseudo/coverage@0.9']).toEqual(steps.map((s) => [s.step, f32(s.pseudo_quality.coverage[3])]))
    const named = evals[0].classes.filter((_: string, k: number) => evals[0].iou[k] !== null)
    for (const c of named) expect(tb.scalars[`eval/teacher/iou/${c}`]?.length, c).toBe(evals.length)
    // Two strips per evaluation, four 40-pixel panels wide with 2-pixel gaps, PNG-encoded.
    for (const i of [0, 1]) {
      expect(tb.images[`val/${i}`]).toEqual(evals.map((e) => [e.step, 4 * 40 + 3 * 2, 40, '89504e470d0a1a0a']))
    }
    // And two unlabeled images through the unlabeled branch: six 32-pixel panels (the crop).
    for (const i of [0, 1]) {
      expect(tb.images[`unlabeled/${i}`]).toEqual(evals.map((e) => [e.step, 6 * 32 + 5 * 2, 32, '89504e470d0a1a0a']))
    }
    const last = join(runDir, 'pictures', `step-${evals.at(-1).step}`)
    expect(JSON.parse(readFileSync(join(last, 'pictures.json'), 'utf8'))).toMatchObject({ model: 'teacher', images: [{ file: 'val-0.png' }, { file: 'val-1.png' }] })
    expect(existsSync(join(last, 'val-1.png'))).toBe(true)
  }, 300_000)

  it('records that do not frame (a torn last record) are skipped by the reader; the rest read', async () => {
    const logdir = join(dir, 'torn')
    const w = new EventWriter(logdir)
    w.scalars(1, { a: 1 })
    w.scalars(2, { a: 2 })
    const { appendFileSync } = await import('node:fs')
    appendFileSync(w.path, Buffer.from([40, 0, 0, 0, 0, 0, 0, 0, 1, 2]))
    expect((await readBack(logdir)).scalars.a).toEqual([[1, 1], [2, 2]])
  }, 60_000)

  it('log.tensorboard=false writes no event file', async () => {
    const runDir = join(dir, 'off')
    await new Experiment(tinyConfig(data, 'tb', ['log.tensorboard=false', 'log.val_images=0', 'sampling.epochs=1']), { runDir, worker, progress: false, log: () => undefined }).run()
    expect(readdirSync(runDir).some((f) => f.startsWith('events.out.tfevents.'))).toBe(false)
    expect(existsSync(join(runDir, 'pictures'))).toBe(false)
  }, 300_000)
})
