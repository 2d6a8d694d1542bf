// A tiny model trained by a real worker over ZeroMQ, driven from TypeScript.
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WorkerError } from '../../ts/wire/errors.ts'
import type { OpArgs } from '../../ts/wire/ops/index.ts'
import { tensor, type Tensor } from '../../ts/wire/tensor.ts'
import { encodeLabelPng, encodeRgbPng } from '../../ts/data/png.ts'
import { paperPolicy, stepArgs, syntheticBatch, tinySettings, type WorkerSettings } from '../../ts/worker/settings.ts'
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
    ...stepArgs(settings, step, { lr: 0.02, head_lr: 0.002, policy: paperPolicy({ mix, weak_threshold: 0.3 }) }),
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
    const a = await train(settings, 24)
    const b = await train(settings, 24)
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
    expect(r.body.stats.classes_present).toBeGreaterThanOrEqual(2)
    expect(r.body.stats.hard_pixels_per_class).toHaveLength(4)
    expect(r.body.stats.hard_pixels_per_class.reduce((a, b) => a + b, 0)).toBeGreaterThan(0)
    expect(Object.keys(r.body.time_ms)).toEqual(expect.arrayContaining(['decode', 'forward', 'loss', 'backward', 'total']))
  }, 120_000)

  it('runs with bf16 autocast and channels-last', async () => {
    const settings = tinySettings({ amp: 'bf16', channels_last: true })
    await worker.call('configure', settings)
    const r = await worker.call('train_step', stepBody(settings, 0), { tensors: batch })
    expect(Number.isFinite(r.body.total)).toBe(true)
    expect(r.body.total).toBeGreaterThan(0)
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

describe('a supervised-only loss', () => {
  const supervised = () => tinySettings({}, { unsup: false, prcl: false })
  // EMA decay 0: the teacher is the student's copy after every step, with the buffers the plan names.
  const labeledBody = (step: number, buffers: 'own' | 'ema' = 'ema'): OpArgs<'train_step'> => ({
    ...stepArgs(supervised(), step, { lr: 0.05, head_lr: 0.005, ema: { decay: 0, buffers }, policy: paperPolicy({ mix: 'none' }) }),
  })
  const confusion = async (model: 'teacher' | 'student') => {
    const ev = await worker.call('eval_step', { model, mode: 'whole' }, { tensors: { x: batch.x_l!, y: batch.y_l! } })
    return Array.from(ev.tensors.confusion!.data as BigInt64Array, Number)
  }

  it('trains on labeled images alone, and its teacher follows the student\'s BatchNorm statistics', async () => {
    await worker.call('configure', supervised())
    const labeled = { x_l: batch.x_l!, y_l: batch.y_l! }
    const losses: number[] = []
    for (let s = 0; s < 30; s++) {
      const r = await worker.call('train_step', labeledBody(s), { tensors: labeled })
      expect(Object.keys(r.body.losses)).toEqual(['sup'])
      expect(r.body.time_ms.teacher_augment_u).toBe(0)
      expect(r.body.stats.mask_ratio).toBe(0)
      losses.push(r.body.total)
    }
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.5)
    // Were the teacher's own statistics left as they are (no unlabeled forward moves them), it
    // would predict differently from the student it copies.
    const student = await confusion('student')
    expect([0, 1, 2, 3].reduce((a, i) => a + student[i * 4 + i]!, 0) / (2 * 49 * 49)).toBeGreaterThan(0.6)
    expect(await confusion('teacher')).toEqual(student)
    // With 'own' buffers the worker leaves the teacher's statistics where they are: it predicts
    // otherwise. The worker applies what the plan names and decides nothing itself.
    await worker.call('train_step', labeledBody(30, 'own'), { tensors: labeled })
    const own = await confusion('teacher')
    expect(own).not.toEqual(await confusion('student'))
  }, 120_000)

  it('is refused for a semi-supervised loss, naming the terms that need unlabeled images', async () => {
    await worker.call('configure', tinySettings())
    const err = await worker.call('train_step', { ...stepArgs(tinySettings(), 0), policy: paperPolicy({ mix: 'none' }) },
      { tensors: { x_l: batch.x_l!, y_l: batch.y_l! } }).catch((e) => e)
    expect(err).toBeInstanceOf(WorkerError)
    expect(err.message).toMatch(/loss terms \['unsup', 'prcl'\] need unlabeled images/)
    expect(err.path).toBe('tensors.img_u')
  }, 60_000)
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
  it('a step\'s params: out of range, or a term without any, named by the term', async () => {
    const s = tinySettings()
    await worker.call('configure', s)
    const body = stepBody(s, 0)
    const high = await worker.call('train_step', { ...body, params: { ...body.params, prcl: { ...body.params.prcl, strong_threshold: 1.5 } } }, { tensors: batch }).catch((e) => e)
    expect(high).toBeInstanceOf(WorkerError)
    expect(high.message).toMatch(/'prcl'.*strong_threshold must be smaller than or equal to 1/)
    const { prcl: _, ...rest } = body.params
    const none = await worker.call('train_step', { ...body, params: rest }, { tensors: batch }).catch((e) => e)
    expect(none.message).toMatch(/prcl/)
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
    const weights = (path: string, text = '') => ({ path, sha256: createHash('sha256').update(text).digest('hex'), trusted: true })
    const missing = join(dir, 'resnet18-missing.pth')
    const err = await worker.call('configure', tinySettings({ model: { pretrained: weights(missing) } })).catch((e) => e)
    expect(err.message).toContain(missing)
    writeFileSync(join(dir, 'junk.pth'), 'not a checkpoint')
    const junk = await worker.call('configure', tinySettings({ model: { pretrained: weights(join(dir, 'junk.pth'), 'not a checkpoint') } })).catch((e) => e)
    expect(junk.message).toContain('junk.pth')
    expect(junk.message).toMatch(/cannot be read/)
  })
})

describe('encoded images', () => {
  const size = 40
  const mean = [0.485, 0.456, 0.406]
  const std = [0.229, 0.224, 0.225]

  function pngs(seed: number) {
    // Two labeled and two unlabeled RGB PNGs with palette label PNGs, and the same as raw tensors.
    let s = seed
    const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296)
    const enc: Record<string, Tensor> = {}
    const xs: Float32Array[] = []
    const ys: bigint[] = []
    for (const [prefix, n] of [['img_l', 2], ['img_u', 2]] as const) {
      for (let i = 0; i < n; i++) {
        const rgb = new Uint8Array(size * size * 3)
        const lbl = new Uint8Array(size * size)
        for (let p = 0; p < size * size; p++) {
          const k = ((p % size) > size / 2 ? 1 : 0) + (Math.floor(p / size) > size / 2 ? 2 : 0)
          lbl[p] = p % 97 === 0 ? 255 : k
          for (let c = 0; c < 3; c++) rgb[p * 3 + c] = Math.min(255, k * 60 + Math.floor(rnd() * 40))
        }
        enc[`${prefix}.${i}`] = tensor(new Uint8Array(encodeRgbPng(size, size, rgb)), undefined, 'uint8')
        if (prefix === 'img_l') {
          enc[`lbl_l.${i}`] = tensor(new Uint8Array(encodeLabelPng(size, size, lbl)), undefined, 'uint8')
          for (const v of lbl) ys.push(v === 255 ? -1n : BigInt(v))
        }
        const x = new Float32Array(3 * size * size)
        for (let c = 0; c < 3; c++) for (let p = 0; p < size * size; p++) x[c * size * size + p] = Math.fround((rgb[p * 3 + c]! / 255 - mean[c]!) / std[c]!)
        xs.push(x)
      }
    }
    const cat = (a: Float32Array[]) => { const o = new Float32Array(a.length * a[0]!.length); a.forEach((x, i) => o.set(x, i * x.length)); return o }
    const raw = {
      x_l: tensor(cat(xs.slice(0, 2)), [2, 3, size, size]),
      y_l: tensor(BigInt64Array.from(ys), [2, size, size]),
      x_u: tensor(cat(xs.slice(2)), [2, 3, size, size]),
    }
    return { enc, raw }
  }

  function body(settings: WorkerSettings, step: number): OpArgs<"train_step"> {
    const crop = (i: number) => ({ rescale: { scale: 0.9, top: i, left: 1, crop_h: 33, crop_w: 33 } })
    return {
      ...stepBody(settings, step, 'none'),
      unlabeled_aug: undefined,
      labeled_aug: [{ ...crop(0), flip: true }, crop(1)],
      unlabeled_crop: [crop(2), crop(0)],
    }
  }

  it('decodes PNG bytes on the worker and trains as on the same raw tensors', async () => {
    const settings = tinySettings()
    const { enc, raw } = pngs(3)
    await worker.call('configure', settings)
    const a = await worker.call('train_step', body(settings, 0), { tensors: enc })
    await worker.call('configure', settings)
    const b = await worker.call('train_step', body(settings, 0), { tensors: raw })
    expect(a.body.total).toBeGreaterThan(0)
    expect(Math.abs(a.body.total - b.body.total)).toBeLessThan(1e-4 * b.body.total)
  }, 120_000)

  it('prepares the next request while the current one runs', async () => {
    const settings = tinySettings()
    const { enc } = pngs(4)
    await worker.call('configure', settings)
    const before = (await worker.call('stats', {})).body.prepared_ahead
    await Promise.all([0, 1, 2, 3, 4, 5].map((s) => worker.call('train_step', body(settings, s), { tensors: enc })))
    const after = (await worker.call('stats', {})).body.prepared_ahead
    expect(after - before).toBeGreaterThanOrEqual(3)
  }, 120_000)

  it('scores and predicts encoded images of several sizes as it does each alone', async () => {
    await worker.call('configure', tinySettings())
    const { enc } = pngs(6)
    const n = 33 // a second size among the 40-pixel images
    const rgb = new Uint8Array(n * n * 3).map((_, i) => (i * 37) % 251)
    const lbl = new Uint8Array(n * n).map((_, i) => i % 4)
    const png = (b: Uint8Array) => tensor(new Uint8Array(b), undefined, 'uint8')
    const items = [[enc['img_l.0']!, enc['lbl_l.0']!], [png(encodeRgbPng(n, n, rgb)), png(encodeLabelPng(n, n, lbl))], [enc['img_l.1']!, enc['lbl_l.1']!]]
    const confusion = async (list: Tensor[][]) => {
      const t: Record<string, Tensor> = {}
      list.forEach(([img, l], k) => { t[`img.${k}`] = img!; t[`lbl.${k}`] = l! })
      const r = await worker.call('eval_step', { model: 'student', mode: 'whole' }, { tensors: t })
      return Array.from(r.tensors.confusion!.data as BigInt64Array, Number)
    }
    const together = await confusion(items)
    const alone = new Array<number>(16).fill(0)
    for (const item of items) (await confusion([item])).forEach((v, k) => { alone[k]! += v })
    expect(together.reduce((a, b) => a + b)).toBe(2 * 40 * 40 - 2 * Math.ceil(40 * 40 / 97) + n * n)
    // Equal up to argmax ties flipped by another convolution kernel's rounding.
    expect(together.reduce((a, v, k) => a + Math.abs(v - alone[k]!), 0)).toBeLessThanOrEqual(4)

    // predict: outputs named per image, at each image's size, as when predicted alone.
    const imgs = Object.fromEntries(items.map(([img], k) => [`img.${k}`, img!]))
    const pr = await worker.call('predict', { model: 'teacher', outputs: ['classes', 'var'] }, { tensors: imgs })
    expect(pr.tensors['classes.1']!.shape).toEqual([n, n])
    expect(pr.tensors['var.2']!.shape).toEqual([40, 40])
    for (let k = 0; k < items.length; k++) {
      const one = await worker.call('predict', { model: 'teacher', outputs: ['classes'] }, { tensors: { 'img.0': items[k]![0]! } })
      const a = pr.tensors[`classes.${k}`]!.data as Uint8Array, b = one.tensors['classes.0']!.data as Uint8Array
      expect(a.length).toBe(b.length)
      expect(a.filter((v, p) => v !== b[p]).length).toBeLessThanOrEqual(2)
    }
  }, 120_000)

  it('names an image that does not decode', async () => {
    const settings = tinySettings()
    const { enc } = pngs(5)
    await worker.call('configure', settings)
    const bad = { ...enc, 'img_u.1': tensor(new Uint8Array([1, 2, 3, 4]), undefined, 'uint8') }
    const err = await worker.call('train_step', body(settings, 0), { tensors: bad }).catch((e) => e)
    expect(err).toBeInstanceOf(WorkerError)
    expect(err.message).toMatch(/img_u\.1: cannot decode image/)
    expect(err.path).toBe('tensors.img_u.1')
  }, 120_000)
})
