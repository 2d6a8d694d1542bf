// A tiny model trained by a real worker over ZeroMQ, driven from TypeScript.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveWeights } from '../../ts/loss/compose.ts'
import { WorkerError } from '../../ts/wire/errors.ts'
import type { OpArgs } from '../../ts/wire/ops/index.ts'
import { tensor } from '../../ts/wire/tensor.ts'
import { paperPolicy, syntheticBatch, tinySettings, type WorkerSettings } from '../../ts/worker/settings.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { attachShared } from '../setup/attach.ts'

let worker: Worker
let dir: string
beforeAll(async () => {
  worker = await attachShared()
  dir = mkdtempSync(join(tmpdir(), 'prcl-train-'))
})
afterAll(async () => {
  await worker?.call('reset', {}).catch(() => undefined)
  await worker?.close()
  rmSync(dir, { recursive: true, force: true })
})

const batch = syntheticBatch({ batch: 2, size: 49, classes: 4, seed: 5 })

function stepBody(settings: WorkerSettings, step: number, mix: "classmix" | "none" = "classmix"): OpArgs<"train_step"> {
  return {
    step, lr: 0.02, head_lr: 0.002,
    weights: resolveWeights(settings.loss, 0),
    policy: paperPolicy({ mix, weak_threshold: 0.3 }),
    mix: [{ seed: 10 + step }, { seed: 20 + step }],
    unlabeled_aug: [0, 1].map((i) => ({
      rescale: { scale: 1.1, top: i, left: 2 * i, crop_h: 49, crop_w: 49 },
      flip: (step + i) % 2 === 0,
      jitter: { brightness: 1.1, contrast: 0.9, saturation: 1.05, hue: 0.02, order: [3, 1, 0, 2] },
      blur: i === 0 ? { sigma: 0.6 } : null,
    })),
  }
}

async function train(settings: WorkerSettings, steps: number): Promise<number[][]> {
  await worker.call('configure', settings)
  const out: number[][] = []
  for (let s = 0; s < steps; s++) {
    const r = await worker.call('train_step', stepBody(settings, s), { tensors: batch })
    out.push([r.body.total, ...Object.values(r.body.losses).map((l) => l.value)])
  }
  return out
}

describe('training a tiny model on CPU', () => {
  it('lowers the loss, and the same seed gives the same losses twice', async () => {
    const settings = tinySettings()
    const a = await train(settings, 16)
    const b = await train(settings, 16)
    expect(b).toEqual(a)
    const sup = a.map((row) => row[1]!)
    const first = sup.slice(0, 3).reduce((x, y) => x + y) / 3
    const last = sup.slice(-3).reduce((x, y) => x + y) / 3
    expect(last).toBeLessThan(first * 0.7)
    for (const row of a) for (const v of row) expect(Number.isFinite(v)).toBe(true)
    const c = await train(tinySettings({ seed: 1 }), 3)
    expect(c[0]).not.toEqual(a[0])
  }, 300_000)

  it('reports each term with its weight, the statistics and the step time by phase', async () => {
    const settings = tinySettings()
    await worker.call('configure', settings)
    const r = await worker.call('train_step', stepBody(settings, 0), { tensors: batch })
    expect(Object.keys(r.body.losses)).toEqual(['sup', 'unsup', 'prcl'])
    expect(r.body.losses.prcl!.weight).toBe(1)
    const { total, losses } = r.body
    expect(total).toBeCloseTo(losses.sup!.value + losses.unsup!.value + losses.prcl!.value, 4)
    expect(r.body.stats.ema_decay).toBe(0)
    expect(r.body.stats.classes_present).toBeGreaterThanOrEqual(2)
    expect(Object.keys(r.body.time_ms)).toEqual(expect.arrayContaining(['forward', 'loss', 'backward', 'total']))
  }, 120_000)

  it('saves and loads the whole state: the next steps are the same', async () => {
    const settings = tinySettings()
    await worker.call('configure', settings)
    for (let s = 0; s < 2; s++) await worker.call('train_step', stepBody(settings, s), { tensors: batch })
    const path = join(dir, 'state.pt')
    const saved = await worker.call('save', { path })
    expect(saved.body.bytes).toBeGreaterThan(100_000)
    const cont: number[] = []
    for (let s = 2; s < 4; s++) cont.push((await worker.call('train_step', stepBody(settings, s), { tensors: batch })).body.total)
    await worker.call('configure', settings)
    expect((await worker.call('load', { path })).body.step).toBe(1)
    const again: number[] = []
    for (let s = 2; s < 4; s++) again.push((await worker.call('train_step', stepBody(settings, s), { tensors: batch })).body.total)
    expect(again).toEqual(cont)
  }, 120_000)

  it('evaluates a confusion matrix and predicts classes, probabilities and σ²', async () => {
    await worker.call('configure', tinySettings())
    const ev = await worker.call('eval_step', { model: 'teacher', mode: 'whole' }, { tensors: { x: batch.x_l!, y: batch.y_l! } })
    const cm = ev.tensors.confusion!
    expect(cm.shape).toEqual([4, 4])
    expect(Array.from(cm.data as BigInt64Array).reduce((a, b) => a + b, 0n)).toBe(BigInt(2 * 49 * 49))
    const sl = await worker.call('eval_step', { model: 'student', mode: 'sliding', window: [33, 33] }, { tensors: { x: batch.x_l!, y: batch.y_l! } })
    expect(sl.body.pixels).toBe(2 * 49 * 49)
    const pr = await worker.call('predict', { model: 'teacher', outputs: ['classes', 'probs', 'var'] }, { tensors: { x: batch.x_l! } })
    expect(pr.tensors.classes!.shape).toEqual([2, 49, 49])
    expect(pr.tensors.probs!.shape).toEqual([2, 4, 49, 49])
    expect(pr.tensors.var!.shape).toEqual([2, 1, 49, 49])
    const v = pr.tensors.var!.data as Float32Array
    expect(Math.min(...v)).toBeGreaterThan(0)
    expect(Math.max(...v)).toBeLessThan(1)
  }, 120_000)
})

describe('configuration errors name the problem', () => {
  it('an unknown loss op, named by its term', async () => {
    const s = tinySettings()
    s.loss.terms.push({ name: 'extra', op: 'focal', inputs: {}, weight: 1 })
    const err = await worker.call('configure', s).catch((e) => e)
    expect(err).toBeInstanceOf(WorkerError)
    expect(err.type).toBe('SpecError')
    expect(err.message).toMatch(/'extra'.*unknown loss op 'focal'/)
  })
  it('a missing input and a reference to nothing', async () => {
    const s = tinySettings()
    s.loss.terms[0]!.inputs = { logits: 'model.logits_l' }
    expect((await worker.call('configure', s).catch((e) => e)).message).toMatch(/'sup'.*missing \['target'\]/)
    const t = tinySettings()
    t.loss.terms[0]!.inputs = { logits: 'model.nothing', target: 'batch.y_l' }
    expect((await worker.call('configure', t).catch((e) => e)).message).toMatch(/model\.nothing names nothing/)
  })
  it('a cycle between terms', async () => {
    const s = tinySettings()
    s.loss.terms.push({ name: 'a', op: 'sum', inputs: { a: 'term.b', b: 'term.sup' }, weight: 0 },
      { name: 'b', op: 'sum', inputs: { a: 'term.a', b: 'term.sup' }, weight: 0 })
    expect((await worker.call('configure', s).catch((e) => e)).message).toMatch(/cycle: a -> b -> a/)
  })
  it('an out-of-range param', async () => {
    const s = tinySettings()
    s.loss.terms[2]!.params = { ...s.loss.terms[2]!.params, strong_threshold: 1.5 }
    const err = await worker.call('configure', s).catch((e) => e)
    expect(err.message).toMatch(/'prcl'.*params\.strong_threshold must be smaller than or equal to 1/)
  })
  it('a step before configure, and labels out of range', async () => {
    await worker.call('reset', {})
    const err = await worker.call('train_step', stepBody(tinySettings(), 0), { tensors: batch }).catch((e) => e)
    expect(err.type).toBe('NotConfigured')
    await worker.call('configure', tinySettings())
    const y = tensor(new BigInt64Array(2 * 49 * 49).fill(7n), [2, 49, 49])
    const bad = await worker.call('train_step', stepBody(tinySettings(), 0), { tensors: { ...batch, y_l: y } }).catch((e) => e)
    expect(bad.message).toMatch(/y_l holds labels outside -1\.\.3/)
  })
  it('a missing weights file, named', async () => {
    const missing = join(dir, 'resnet18-missing.pth')
    const err = await worker.call('configure', tinySettings({ model: { pretrained: missing } })).catch((e) => e)
    expect(err.message).toContain(missing)
    writeFileSync(join(dir, 'junk.pth'), 'not a checkpoint')
    const junk = await worker.call('configure', tinySettings({ model: { pretrained: join(dir, 'junk.pth') } })).catch((e) => e)
    expect(junk.message).toContain('junk.pth')
  })
})
