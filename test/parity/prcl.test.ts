// The worker's PRCL loss over ZeroMQ against the literal reference in py/reference, called through
// pythonia, on the same seeded inputs made here.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { ROOT } from '../../ts/paths.ts'
import { tensor, type Tensor } from '../../ts/wire/tensor.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { attachShared } from '../setup/attach.ts'
import { b64, fromB64, mulberry32, randn, uniform } from '../setup/random.ts'

let worker: Worker
// pythonia's module proxy: every call returns a promise.
let reference: Record<string, (...args: unknown[]) => Promise<string>>
let pythonExit: () => void

beforeAll(async () => {
  worker = await attachShared()
  process.env.PYTHON_BIN = inject('python')
  const { python } = await import('pythonia')
  pythonExit = () => python.exit()
  reference = await python(`${ROOT}/py/reference/interop.py`)
})
afterAll(async () => {
  pythonExit?.()
  await worker?.close()
})

async function ref(fn: string, ...args: unknown[]): Promise<Record<string, unknown>> {
  return JSON.parse(await reference[fn]!(...args))
}

interface Inputs { rep: Tensor; var: Tensor; label: Tensor; mask: Tensor; prob: Tensor; shape: number[] }

/** rep ~ N(0,1), var ~ U(lo,hi), labels drawn from `classes`, mask kept with p `keep`. */
function inputs(seed: number, o: { b?: number; d?: number; c?: number; h?: number; w?: number; classes?: number[]; keep?: number; varRange?: [number, number]; certain?: number[] } = {}): Inputs {
  const { b = 4, d = 16, c = 6, h = 7, w = 7, classes = [0, 1, 2, 3, 4], keep = 0.85, varRange = [0.05, 0.95], certain = [] } = o
  const rnd = mulberry32(seed)
  const rep = randn(rnd, [b, d, h, w])
  const v = uniform(rnd, [b, d, h, w], varRange[0], varRange[1])
  const label = new Float32Array(b * c * h * w)
  const mask = new Float32Array(b * h * w)
  const prob = new Float32Array(b * c * h * w)
  for (let i = 0; i < b; i++) {
    for (let p = 0; p < h * w; p++) {
      const k = classes[Math.floor(rnd() * classes.length)]!
      label[(i * c + k) * h * w + p] = 1
      mask[i * h * w + p] = rnd() < keep ? 1 : 0
      const logits = Array.from({ length: c }, () => 2 * (rnd() * 2 - 1))
      if (certain.includes(k)) logits[k] = 50
      const z = Math.max(...logits)
      const e = logits.map((x) => Math.exp(x - z))
      const s = e.reduce((a, x) => a + x, 0)
      for (let j = 0; j < c; j++) prob[(i * c + j) * h * w + p] = e[j]! / s
    }
  }
  return {
    rep, var: v, label: tensor(label, [b, c, h, w]), mask: tensor(mask, [b, 1, h, w]), prob: tensor(prob, [b, c, h, w]),
    shape: [b, d, c, h, w],
  }
}

const PARAMS = { strong_threshold: 0.8, temp: 0.5, num_queries: 16, num_negatives: 24 }

async function referenceLoss(x: Inputs, params: Record<string, number>, seed: number | null, draws?: { anchors: Tensor; negatives: Tensor }, grad = true) {
  return ref('prcl', b64(x.rep), b64(x.var), b64(x.label), b64(x.mask), b64(x.prob), x.shape, JSON.stringify(params), seed,
    draws ? b64(draws.anchors) : null, draws ? b64(draws.negatives) : null, grad)
}

async function workerLoss(x: Inputs, params: Record<string, number>, seed: number | null, draws?: { anchors: Tensor; negatives: Tensor }, grad = true) {
  // The worker holds no defaults: the released loss has no separate negative temperature.
  return worker.call('loss_probe', { what: 'prcl', params: { neg_temp: null, ...params }, seed, return_draws: true, grad }, {
    tensors: { rep: x.rep, var: x.var, label: x.label, mask: x.mask, prob: x.prob, ...(draws ?? {}) },
  })
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

describe('deterministic pieces agree to 1e-6', () => {
  it('MLS, broadcasting [Q,1,D] against [Q,1+K,D]', async () => {
    const rnd = mulberry32(11)
    const [q, k, d] = [8, 9, 32]
    const a = randn(rnd, [q, 1, d]); const va = uniform(rnd, [q, 1, d], 0.01, 1)
    const t = randn(rnd, [q, 1 + k, d]); const vt = uniform(rnd, [q, 1 + k, d], 0.01, 1)
    const w = await worker.call('loss_probe', { what: 'mls', params: {}, seed: null, return_draws: false, grad: false }, { tensors: { mu_a: a, var_a: va, mu_b: t, var_b: vt } })
    const r = await ref('mls', b64(a), b64(va), b64(t), b64(vt), [q, 1, d], [q, 1 + k, d])
    expect(w.tensors.value!.shape).toEqual([q, 1 + k])
    expect(maxAbsDiff(w.tensors.value!.data as Float32Array, fromB64(r.value as string, 'float32', [q, 1 + k]).data as Float32Array)).toBeLessThan(1e-6)
  })

  it('distribution prototypes (product of Gaussians per class)', async () => {
    const rnd = mulberry32(12)
    const [n, d, c] = [200, 16, 5]
    const mu = randn(rnd, [n, d]); const v = uniform(rnd, [n, d], 0.05, 0.95)
    const valid = new Float32Array(n * c)
    for (let p = 0; p < n; p++) { const k = Math.floor(rnd() * (c + 1)); if (k < c - 1) valid[p * c + k] = 1 } // class c-1 absent
    const w = await worker.call('loss_probe', { what: 'prototypes', params: {}, seed: null, return_draws: false, grad: false }, { tensors: { mu, var: v, valid: tensor(valid, [n, c]) } })
    const r = await ref('prototypes', b64(mu), b64(v), b64(tensor(valid, [n, c])), n, d, c)
    expect(r.present).toEqual([true, true, true, true, false])
    expect(Array.from(w.tensors.present!.data as Uint8Array)).toEqual([1, 1, 1, 1, 0])
    const rows = (t: Float32Array) => t.subarray(0, (c - 1) * d)
    expect(maxAbsDiff(rows(w.tensors.proto_mu!.data as Float32Array), rows(fromB64(r.mu as string, 'float32', [c, d]).data as Float32Array))).toBeLessThan(1e-6)
    expect(maxAbsDiff(rows(w.tensors.proto_var!.data as Float32Array), rows(fromB64(r.var as string, 'float32', [c, d]).data as Float32Array))).toBeLessThan(1e-6)
  })
})

describe('the PRCL loss with the same draws', () => {
  for (const temp of [0.5, 100]) {
    it(`agrees exactly, and so do the gradients (τ = ${temp})`, async () => {
      const x = inputs(21)
      const params = { ...PARAMS, temp }
      const r = await referenceLoss(x, params, 5)
      const [c, q, k] = [x.shape[2]!, params.num_queries, params.num_negatives]
      const draws = { anchors: fromB64(r.anchors as string, 'int64', [c, q]), negatives: fromB64(r.negatives as string, 'int64', [c, q, k]) }
      const w = await workerLoss(x, params, null, draws)
      expect(Math.abs(w.body.value! - (r.value as number))).toBeLessThan(1e-5 * Math.abs(r.value as number))
      const gr = fromB64(r.grad_rep as string, 'float32', x.rep.shape).data as Float32Array
      const gv = fromB64(r.grad_var as string, 'float32', x.rep.shape).data as Float32Array
      const scale = Math.max(...Array.from(gr, Math.abs))
      expect(maxAbsDiff(w.tensors.grad_rep!.data as Float32Array, gr)).toBeLessThan(1e-4 * scale)
      expect(maxAbsDiff(w.tensors.grad_var!.data as Float32Array, gv)).toBeLessThan(1e-4 * Math.max(...Array.from(gv, Math.abs)))
    })
  }

  it('sends gradient only to the sampled anchors', async () => {
    const x = inputs(22)
    const w = await workerLoss(x, PARAMS, 3)
    const [b, d, , h, wd] = x.shape as [number, number, number, number, number]
    const anchors = new Set(Array.from(w.tensors.anchors!.data as BigInt64Array).filter((i) => i >= 0n).map(Number))
    const g = w.tensors.grad_rep!.data as Float32Array
    const touched = new Set<number>()
    for (let i = 0; i < b; i++) for (let ch = 0; ch < d; ch++) for (let p = 0; p < h * wd; p++) {
      if (g[(i * d + ch) * h * wd + p] !== 0) touched.add(i * h * wd + p)
    }
    expect(anchors.size).toBeGreaterThan(10)
    expect([...touched].sort((a, c) => a - c)).toEqual([...anchors].sort((a, c) => a - c))
  })
})

describe('the PRCL loss with its own draws', () => {
  it('matches the reference in distribution over 16 seeds (Welch t and variance ratio)', async () => {
    const x = inputs(23)
    const params = { ...PARAMS, num_queries: 8, num_negatives: 16 }
    const ws: number[] = []
    const rs: number[] = []
    for (let s = 0; s < 16; s++) {
      ws.push((await workerLoss(x, params, 1000 + s, undefined, false)).body.value!)
      rs.push((await referenceLoss(x, params, 2000 + s, undefined, false)).value as number)
    }
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length
    const sd = (a: number[]) => Math.sqrt(a.reduce((s, v) => s + (v - mean(a)) ** 2, 0) / (a.length - 1))
    // Welch's t for equal means; |t| < 4 (p ≈ 0.001 at ~30 dof, so a correct implementation fails
    // about once in a thousand runs), and the sd ratio within the F(15,15) 0.999 bounds (≈ 1/4.6, 4.6)^½.
    const t = (mean(ws) - mean(rs)) / Math.sqrt(sd(ws) ** 2 / 16 + sd(rs) ** 2 / 16)
    expect(sd(ws)).toBeGreaterThan(0)
    expect(Math.abs(t)).toBeLessThan(4)
    expect(sd(ws) / sd(rs)).toBeGreaterThan(1 / Math.sqrt(4.6))
    expect(sd(ws) / sd(rs)).toBeLessThan(Math.sqrt(4.6))
  }, 120_000)
})

describe('edge cases give the spec\'s answer without NaN', () => {
  const cases: Array<[string, Parameters<typeof inputs>[1], number | 'positive']> = [
    ['one class present', { classes: [2] }, 0],
    ['an all-ignore batch (mask 0)', { keep: 0 }, 0],
    ['no class with hard anchors', { classes: [1, 3], certain: [1, 3] }, 0],
    ['a class without hard anchors (still counted in |V|)', { classes: [0, 1, 2], certain: [2] }, 'positive'],
    ['σ² at the floor', { varRange: [1e-6, 2e-6] }, 'positive'],
    ['σ² near 1', { varRange: [0.98, 0.999] }, 'positive'],
  ]
  for (const [name, o, want] of cases) {
    it(name, async () => {
      const x = inputs(31, o)
      const r = await referenceLoss(x, PARAMS, 7)
      const [c, q, k] = [x.shape[2]!, PARAMS.num_queries, PARAMS.num_negatives]
      const draws = { anchors: fromB64(r.anchors as string, 'int64', [c, q]), negatives: fromB64(r.negatives as string, 'int64', [c, q, k]) }
      const w = await workerLoss(x, PARAMS, null, draws)
      expect(Number.isFinite(w.body.value)).toBe(true)
      expect(Array.from(w.tensors.grad_rep!.data as Float32Array).every(Number.isFinite)).toBe(true)
      if (want === 0) expect(w.body.value).toBe(0)
      else expect(w.body.value!).toBeGreaterThan(0)
      expect(Math.abs(w.body.value! - (r.value as number))).toBeLessThanOrEqual(1e-5 * Math.abs(r.value as number))
    })
  }
})
