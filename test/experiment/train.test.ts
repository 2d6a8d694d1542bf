// End to end on the synthetic dataset, through the same VOC code path as real data: a run
// directory with its files, best/last evaluation, and a resumed run that equals an uninterrupted one.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { PY_DIR, ROOT } from '../../ts/paths.ts'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { readCheckpoint } from '../../ts/experiment/checkpoint.ts'
import { evaluateCheckpoint } from '../../ts/experiment/evaluate.ts'
import { bytesTensor } from '../../ts/wire/tensor.ts'
import { Experiment, type StepEvent } from '../../ts/experiment/run.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { attachShared } from '../setup/attach.ts'
import { tinyConfig, tinyDataset } from '../setup/tiny-run.ts'

let worker: Worker
let dir: string
let data: string

beforeAll(async () => {
  worker = await attachShared()
  ;({ dir, data } = await tinyDataset('e2e'))
}, 120_000)
afterAll(async () => {
  await worker?.close()
  rmSync(dir, { recursive: true, force: true })
})

function config(sets: string[] = []): ExperimentConfig {

  return tinyConfig(data, 'e2e', sets)

}

async function steps(runDir: string, opts: { resume?: boolean; stopAfter?: number } = {}): Promise<StepEvent[]> {
  const exp = new Experiment(config(), { runDir, worker, progress: false, log: () => undefined, ...opts })
  const seen: StepEvent[] = []
  exp.on('step', (e: StepEvent) => seen.push(e))
  await exp.run()
  return seen
}

describe('a run on the synthetic dataset', () => {
  it('writes the run directory: config first, splits, metrics, checkpoints, summary', async () => {
    const runDir = join(dir, 'full')
    const seen = await steps(runDir)
    expect(seen.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    const files = readdirSync(runDir)
    expect(files).toEqual(expect.arrayContaining(['config.json', 'splits.json', 'metrics.jsonl', 'summary.json', 'checkpoints']))
    expect(JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8')).name).toBe('e2e')
    const splits = JSON.parse(readFileSync(join(runDir, 'splits.json'), 'utf8'))
    expect(splits.labeled.sha16).toMatch(/^[0-9a-f]{16}$/)
    expect(splits.labeled.lines).toBe(8)
    const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    expect(lines.filter((l) => l.type === 'eval').map((l) => l.epoch)).toEqual([1, 2])
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'))
    expect(summary.steps).toBe(8)
    expect(summary.best.miou).toBeGreaterThan(0)
    expect(summary.best.miou).toBeGreaterThanOrEqual(summary.last.miou)
    expect(summary.last.iou).toHaveLength(5)
    expect(summary.splits.val.lines).toBe(6)
    const ck = readCheckpoint(join(runDir, 'checkpoints', 'latest'))
    expect(ck.state.step).toBe(8)
    expect(existsSync(join(runDir, 'checkpoints', 'best', 'manifest.json'))).toBe(true)
  }, 300_000)

  it('an interrupted and resumed run gives the same per-step losses as an uninterrupted one', async () => {
    const whole = await steps(join(dir, 'whole'))
    const runDir = join(dir, 'interrupted')
    const first = await steps(runDir, { stopAfter: 3 })
    expect(first.map((e) => e.step)).toEqual([1, 2, 3])
    // A half-written checkpoint (no manifest) is ignored.
    mkdirSync(join(runDir, 'checkpoints', 'latest.tmp'), { recursive: true })
    const rest = await steps(runDir, { resume: true })
    expect(rest.map((e) => e.step)).toEqual([4, 5, 6, 7, 8])
    expect([...first, ...rest].map((e) => [e.step, e.total, e.losses])).toEqual(whole.map((e) => [e.step, e.total, e.losses]))
  }, 300_000)

  it('a recorded run replays in-process, without a driver, to the same losses', async () => {
    const record = join(dir, 'requests.bin')
    const exp = new Experiment(config(), { runDir: join(dir, 'recorded'), worker, progress: false, log: () => undefined, record })
    const driven: StepEvent[] = []
    exp.on('step', (e: StepEvent) => driven.push(e))
    await exp.run()
    const { stdout: out } = await promisify(execFile)(inject('python'), ['-m', 'prcl_worker.replay', record], { cwd: ROOT, env: { ...process.env, PYTHONPATH: PY_DIR }, encoding: 'utf8' })
    const replayed = out.trim().split('\n').map((l) => JSON.parse(l))
    expect(replayed.map((r) => r.step)).toEqual(driven.map((e) => e.step))
    expect(replayed.map((r) => [r.total, r.losses])).toEqual(driven.map((e) => [e.total, e.losses]))
  }, 300_000)

  it('evaluates a saved checkpoint again, and predicts class and σ² maps for image files', async () => {
    const runDir = join(dir, 'evaluated')
    await steps(runDir)
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'))
    const r = await evaluateCheckpoint(runDir, { which: 'best', models: ['teacher', 'student'], worker })
    expect(r.results.map((e) => e.model)).toEqual(['teacher', 'student'])
    expect(r.results[0]!.miou).toBeCloseTo(summary.best.miou, 10)
    const image = readFileSync(join(data, 'JPEGImages', 'synth_000000.jpg'))
    const p = await worker.call('predict', { model: 'teacher', outputs: ['classes', 'var'] }, { tensors: { 'img.0': bytesTensor(image) } })
    expect(p.tensors['classes.0']!.shape).toEqual([40, 40])
    expect(p.tensors['classes.0']!.dtype).toBe('uint8')
    expect(Math.max(...(p.tensors['classes.0']!.data as Uint8Array))).toBeLessThan(5)
    expect(p.tensors['var.0']!.shape).toEqual([40, 40])
    // prcl predict: says which checkpoint and network; σ² as a heat map with its scale beside it.
    const out = join(dir, 'predicted')
    // Not execFileSync: a blocked event loop would miss the shared worker's heartbeats.
    const { stdout: cli } = await promisify(execFile)(process.execPath, [join(ROOT, 'ts/cli/prcl.mjs'), 'predict', '--run', runDir, '--out', out, '--var', '--model', 'student',
      join(data, 'JPEGImages', 'synth_000000.jpg')], { encoding: 'utf8' })
    expect(cli).toMatch(new RegExp(`^checkpoint ${join(runDir, 'checkpoints', 'best')} \\(step ${summary.best.step}, epoch \\d+\\), student network$`, 'm'))
    const scale = JSON.parse(readFileSync(join(out, 'synth_000000.var.json'), 'utf8'))
    expect(scale).toMatchObject({ model: 'student', step: summary.best.step, colours: { low: [68, 1, 84], high: [253, 231, 37] } })
    expect(scale.var_min).toBeLessThanOrEqual(scale.var_max)
    expect(readdirSync(out).sort()).toEqual(['synth_000000.png', 'synth_000000.var.json', 'synth_000000.var.png'])
  }, 300_000)

  it('a checkpoint whose files do not match its manifest is refused', async () => {
    const runDir = join(dir, 'corrupted')
    await steps(runDir)
    const latest = join(runDir, 'checkpoints', 'latest')
    const driver = join(latest, 'driver.json')
    const text = readFileSync(driver, 'utf8')
    await import('node:fs').then((fs) => fs.writeFileSync(driver, text.replace('"step":8', '"step":9')))
    expect(() => readCheckpoint(latest)).toThrow(/driver\.json does not match its manifest/)
  })

  it('names the file of a label value out of range, and skips bad samples when asked', async () => {
    const { cpSync, writeFileSync } = await import('node:fs')
    const { encodeLabelPng } = await import('../../ts/data/png.ts')
    const bad = join(dir, 'bad-data')
    cpSync(data, bad, { recursive: true })
    const labeled = readFileSync(join(bad, 'splits/8/0/labeled_filename.txt'), 'utf8').split('\n')[0]!
    const unlabeled = readFileSync(join(bad, 'splits/8/0/unlabeled_filename.txt'), 'utf8').split('\n')[0]!
    const label = join(bad, 'SegmentationClass', `${labeled}.png`)
    const image = join(bad, 'JPEGImages', `${unlabeled}.jpg`)
    writeFileSync(label, encodeLabelPng(40, 40, new Uint8Array(40 * 40).fill(9)))
    writeFileSync(image, 'not an image')
    const c = config()
    c.data.root = bad
    // The pre-flight (data.check, default fast) finds both before any step, in one error.
    const pre = await new Experiment(c, { runDir: join(dir, 'bad-pre'), worker, log: () => undefined }).run().catch((e) => e)
    expect(pre.message).toMatch(new RegExp(`SegmentationClass/${labeled}\\.png \\(labeled line 1\\): holds the value 9`))
    expect(pre.message).toContain(`JPEGImages/${unlabeled}.jpg (unlabeled line 1)`)
    expect(existsSync(join(dir, 'bad-pre'))).toBe(false)
    // Without it, the worker's decoder names the label's file at its step.
    c.data.check = 'none'
    c.data.skip_bad_samples = true
    const err = await new Experiment(c, { runDir: join(dir, 'bad-label'), worker, log: () => undefined }).run().catch((e) => e)
    expect(err.message).toContain(label)
    expect(err.message).toMatch(/holds the value 9, outside 0\.\.4/)
    // With the pre-flight and skip_bad_samples, both samples are left out and reported.
    c.data.check = 'fast'
    const summary = await new Experiment(c, { runDir: join(dir, 'skip'), worker, log: () => undefined }).run()
    expect(summary.steps).toBe(8)
    expect(summary.skipped.map((s) => s.file).sort()).toEqual([image, label].sort())
    // Repair the label: without the check, the unreadable unlabeled image is still skipped.
    cpSync(join(data, 'SegmentationClass', `${labeled}.png`), label)
    c.data.check = 'none'
    const s2 = await new Experiment(c, { runDir: join(dir, 'skip2'), worker, log: () => undefined }).run()
    expect(s2.skipped.map((s) => s.file)).toEqual([image])
  }, 300_000)

  it('names a missing data root and a missing split file', async () => {
    const c = config()
    c.data.root = join(dir, 'nowhere')
    await expect(new Experiment(c, { runDir: join(dir, 'bad1'), worker, log: () => undefined }).run()).rejects.toThrow(/nowhere does not exist/)
    const d = config()
    d.data.splits.val = 'splits/none.txt'
    await expect(new Experiment(d, { runDir: join(dir, 'bad2'), worker, log: () => undefined }).run()).rejects.toThrow(/data\.splits\.val: .*none\.txt does not exist/)
    // Nothing is created for a run that cannot start.
    expect(existsSync(join(dir, 'bad1'))).toBe(false)
    expect(existsSync(join(dir, 'bad2'))).toBe(false)
    const e = config()
    e.eval = { ...e.eval, protocol: 'sliding', window: null, stride: null }
    expect(() => new Experiment(e, { runDir: join(dir, 'bad3'), worker })).toThrow(/eval\.window = null: must be \[height, width\]/)
    expect(existsSync(join(dir, 'bad3'))).toBe(false)
  })

  it('a threshold on a schedule changes per step, and metrics.jsonl shows what each step used', async () => {
    const runDir = join(dir, 'scheduled')
    const exp = new Experiment(config(['schedule_granularity=step',
      'loss.terms.unsup.params.threshold={"kind":"linear","from":0.5,"to":0.9,"end":2}',
      'policy.weak_threshold={"kind":"linear","from":0.2,"to":0.6,"end":2}']), { runDir, worker, progress: false, log: () => undefined })
    await exp.run()
    const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'step')
    // 8 steps over 2 epochs: progress t = (step − 1) / 4 epochs.
    lines.forEach((l, i) => {
      expect(l.params.unsup.threshold).toBeCloseTo(0.5 + 0.4 * (i / 4) / 2, 12)
      expect(l.weak_threshold).toBeCloseTo(0.2 + 0.4 * (i / 4) / 2, 12)
    })
    expect(lines[0].ema_decay).toBe(0)
    expect(lines[1].ema_decay).toBe(0.5)
    expect(lines.every((l) => l.params.prcl.num_queries === 32)).toBe(true)
  }, 300_000)
})
