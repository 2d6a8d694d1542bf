// `prcl bench ddp`: steps/s of the tiny model at world size 1 (one worker, a batch of 2b) and at
// world size 2 (a WorkerGroup of two CPU ranks, gloo, b per rank, both ranks stepping at once), in
// one run, as a ratio; and the bytes a step hands to collectives per rank, by category.
//
// The bytes are measured: every rank counts the collectives it issues, by kind (calls and bytes
// handed in; py/prcl_worker/distributed.py), and answers the counters in its `stats` reply; the
// bench takes their difference over the measured steps. One category cannot be measured: DDP's
// all-reduce of its unused-parameter map (find_unused_parameters) runs inside torch's C++ reducer,
// so it is computed from the model (an int32 per parameter tensor), as every category was before
// the counters existed; those computed numbers are kept in the result next to the measured ones,
// and are still how the R101 figures (no R101 run here) are made.
import { execFile } from 'node:child_process'
import { cpus } from 'node:os'
import { promisify } from 'node:util'
import { PY_DIR, ROOT } from '../paths.ts'
import type { OpResult } from '../wire/ops/index.ts'
import type { Tensor, Tensors } from '../wire/tensor.ts'
import { WorkerGroup } from '../worker/group.ts'
import { findPython } from '../worker/python.ts'
import { paperSettings, stepArgs, syntheticBatch, tinySettings } from '../worker/settings.ts'
import type { WorkerSettings } from '../worker/settings.ts'
import { machine } from './wire.ts'

export interface DdpBenchOptions {
  steps?: number
  /** Images per rank (b); world size 1 takes 2b. */
  perRank?: number
}

interface ModelCounts {
  /** Elements of the parameters DDP reduces (student and uncertainty head, requires_grad). */
  grad_elements: number
  param_tensors: number
  /** Channels of each BatchNorm layer of the student and of the head. */
  bn_student: number[]
  bn_head: number[]
  /** Bytes of the student's and head's buffers, and of the teacher's (broadcast_buffers). */
  buffer_bytes: number
  teacher_buffer_bytes: number
}

const COUNT_PY = `
import json, sys
from torch.nn.modules.batchnorm import _BatchNorm
from prcl_worker.model import build_model
out = {}
for name, cfg in json.loads(sys.argv[1]).items():
    net = build_model(cfg)
    params = [p for m in (net.student, net.head) for p in m.parameters() if p.requires_grad]
    bn = lambda m: [x.num_features for x in m.modules() if isinstance(x, _BatchNorm)]
    nbytes = lambda m: sum(b.numel() * b.element_size() for b in m.buffers())
    out[name] = {"grad_elements": sum(p.numel() for p in params), "param_tensors": len(params),
                 "bn_student": bn(net.student), "bn_head": bn(net.head),
                 "buffer_bytes": nbytes(net.student) + nbytes(net.head), "teacher_buffer_bytes": nbytes(net.teacher)}
print(json.dumps(out))
`

async function countModels(models: Record<string, WorkerSettings['model']>): Promise<Record<string, ModelCounts>> {
  const { python } = await findPython()
  const { stdout } = await promisify(execFile)(python, ['-c', COUNT_PY, JSON.stringify(models)], {
    cwd: ROOT, env: { ...process.env, PYTHONPATH: PY_DIR }, maxBuffer: 1 << 20,
  })
  return JSON.parse(stdout) as Record<string, ModelCounts>
}

/** Bytes one rank hands to collectives in one semi-supervised train_step at world size > 1 (the
 *  buffer sizes, as nccl-tests' "size"; a ring all-reduce moves 2·(N−1)/N of that per rank). */
export function stepBytes(m: ModelCounts, s: WorkerSettings, lossTerms: number, teacherBn: 'train' | 'eval') {
  const C = s.model.num_classes
  const D = s.model.rep_dim
  const d = s.distributed
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)
  // SyncBN: the student runs twice (labeled, unlabeled), the head once on both halves. Forward:
  // all_gather of (mean, M2, count) in float64; backward: all_reduce of Σdy, Σdy·x̂ in float64.
  // A synchronised teacher pseudo-labelling in train mode adds one forward (the student's layers).
  const bnBackwards = d.sync_bn ? [...m.bn_student, ...m.bn_student, ...m.bn_head] : []
  const bnForwards = [...bnBackwards, ...(d.teacher_sync_bn && teacherBn === 'train' ? m.bn_student : [])]
  const prcl = JSON.stringify(s.loss).includes('"prcl"')
  const bytes = {
    ddp_gradients: m.grad_elements * 4,
    ddp_unused_map: m.param_tensors * 4, // find_unused_parameters: an int32 per parameter tensor
    ddp_buffers: d.broadcast_buffers ? m.buffer_bytes + m.teacher_buffer_bytes : 0,
    sync_bn_forward: sum(bnForwards.map((c) => (2 * c + 1) * 8)),
    sync_bn_backward: sum(bnBackwards.map((c) => 2 * c * 8)),
    prcl_prototypes: prcl && d.prototypes === 'global' ? C * (2 * D + 1) * 4 : 0,
    // reduce_results: total, each term, mask_ratio and hard pixels per class (float64), then 2 int64.
    results: (1 + lossTerms + 1 + C) * 8 + 2 * 8,
  }
  return { total: sum(Object.values(bytes)), ...bytes }
}

type Collectives = NonNullable<OpResult<'stats'>['collectives']>

/** Per step, by kind, between two readings of a rank's counters (every kind either reading has). */
export function perStep(before: Collectives, after: Collectives, steps: number) {
  const kinds = [...new Set([...Object.keys(before), ...Object.keys(after)])]
  const zero = { calls: 0, bytes: 0 }
  const of = (k: string, w: 'calls' | 'bytes') => ((after[k] ?? zero)[w] - (before[k] ?? zero)[w]) / steps
  return {
    bytes: Object.fromEntries(kinds.map((k) => [k, of(k, 'bytes')])) as Record<string, number>,
    calls: Object.fromEntries(kinds.map((k) => [k, of(k, 'calls')])) as Record<string, number>,
  }
}

/** A tensor's images [from, to) along the first dimension. */
function rows(t: Tensor, from: number, to: number): Tensor {
  const per = t.data.length / t.shape[0]!
  return { dtype: t.dtype, shape: [to - from, ...t.shape.slice(1)], data: t.data.slice(from * per, to * per) } as Tensor
}

/** Ring all-reduce time of `bytes` over `n` ranks at `gbps` GB/s per direction, in ms. */
export function ringMs(bytes: number, n: number, gbps: number): number {
  return (2 * (n - 1) / n) * bytes / (gbps * 1e9) * 1000
}

export async function ddpBench(o: DdpBenchOptions = {}) {
  const steps = o.steps ?? 10
  const b = o.perRank ?? 2
  const cores = cpus().length
  const r2 = (x: number) => Math.round(x * 100) / 100
  const base = tinySettings()
  const size = 65
  const full = syntheticBatch({ batch: 2 * b, size, classes: base.model.num_classes, seed: 7 })
  const half = (r: number): Tensors => Object.fromEntries(Object.entries(full).map(([k, t]) => [k, rows(t, r * b, (r + 1) * b)]))
  const mix = (s: number, n: number, off: number) => Array.from({ length: n }, (_, i) => ({ seed: s * 1000 + off + i }))

  // Each world gets the whole machine: one worker with every core, or two ranks with half each.
  async function run(world: 1 | 2) {
    const settings = tinySettings({ threads: world === 1 ? cores : Math.max(1, Math.floor(cores / 2)) })
    const group = await WorkerGroup.start({ size: world, device: 'cpu', log: 'silent' })
    try {
      await group.all('configure', () => settings, { timeoutMs: 600_000 })
      let terms = 0
      const t: number[] = []
      const counters = async () => (await group.all('stats', () => ({}))).map((r) => r.body.collectives)
      let before: Array<Collectives | null> = []
      for (let s = 0; s < steps + 2; s++) {
        if (s === 2) before = await counters()
        const t0 = performance.now()
        const replies = await Promise.all(group.workers.map((_, r) => group.call(r, 'train_step', {
          ...stepArgs(settings, s), mix: mix(s, world === 1 ? 2 * b : b, r * b),
        }, { tensors: world === 1 ? full : half(r), timeoutMs: 600_000 })))
        terms = Object.keys(replies[0]!.body.losses).length
        if (s >= 2) t.push(performance.now() - t0)
      }
      const after = await counters()
      const ms = [...t].sort((a, c) => a - c)[t.length >> 1]!
      // Counters exist at world size > 1 only (null for a worker alone).
      const measured = after.map((a, r) => (a && before[r] ? perStep(before[r]!, a, steps) : null))
      return { settings, terms, step_ms_p50: r2(ms), steps_per_s: r2(1000 / ms), machine: machine(group.workers[0]), measured }
    } finally {
      await group.close()
    }
  }
  const w1 = await run(1)
  const w2 = await run(2)
  const r101 = paperSettings({ deterministic: false }, { epochs: 200 })
  const counts = await countModels({ tiny: base.model, r101: r101.model })
  const teacherBn = stepArgs(base, 0).policy.teacher_bn
  const tinyBytes = stepBytes(counts.tiny!, w2.settings, w2.terms, teacherBn)
  const [m0, ...others] = w2.measured
  if (!m0) throw new Error('the world-2 ranks answered no collective counters (stats.collectives is null)')
  const measured = { ...m0.bytes, ddp_unused_map: tinyBytes.ddp_unused_map }
  const measuredTotal = Object.values(measured).reduce((a, b) => a + b, 0)
  const r101Bytes = stepBytes(counts.r101!, r101, w2.terms, teacherBn)
  const links = [
    { setup: '8 GPUs, one box, NVLink', ranks: 8, gbps: 300 },
    { setup: '4 nodes, 100 Gb/s Ethernet', ranks: 4, gbps: 12.5 },
    { setup: '4 nodes, InfiniBand HDR', ranks: 4, gbps: 25 },
  ]
  return {
    steps, per_rank_batch: b, image_size: size, cores,
    world1_threads: w1.settings.threads, world2_threads_per_rank: w2.settings.threads,
    world1_step_ms_p50: w1.step_ms_p50, world2_step_ms_p50: w2.step_ms_p50,
    world1_steps_per_s: w1.steps_per_s, world2_steps_per_s: w2.steps_per_s,
    world2_over_world1: r2(w2.steps_per_s / w1.steps_per_s),
    bytes_method: "measured: each rank's collective counters (stats.collectives), difference over the measured steps / steps, rank 0's; " +
      "ddp_unused_map computed from the model (DDP's all-reduce of its unused-parameter map runs in torch's C++ reducer, which no counter sees)",
    bytes_per_step: measuredTotal,
    bytes_breakdown: { total: measuredTotal, ...measured },
    calls_per_step: m0.calls,
    computed: ['ddp_unused_map'],
    /** Every rank handed in the same bytes by kind. */
    ranks_agree: others.every((o) => JSON.stringify(o?.bytes) === JSON.stringify(m0.bytes)),
    /** The bytes as computed from the model (what this bench reported before the counters). */
    bytes_computed: tinyBytes,
    r101: {
      grad_elements: counts.r101!.grad_elements,
      bytes_per_step: r101Bytes.total,
      bytes_breakdown: r101Bytes,
      ring_allreduce_ms_estimate: links.map((l) => ({ ...l, ms: r2(ringMs(r101Bytes.ddp_gradients, l.ranks, l.gbps)) })),
    },
    machine: w1.machine,
  }
}

export function ddpTable(r: Awaited<ReturnType<typeof ddpBench>>): string {
  const kb = (x: number) => `${(x / 1024).toFixed(1)} KiB`
  const mb = (x: number) => `${(x / 2 ** 20).toFixed(1)} MiB`
  const kinds = Object.keys(r.bytes_breakdown).filter((k) => k !== 'total')
  const bd = r.bytes_breakdown as Record<string, number>
  return [
    `data parallel, tiny model, ${r.per_rank_batch}+${r.per_rank_batch} images of ${r.image_size}x${r.image_size} per rank, CPU (gloo), medians of ${r.steps} steps`,
    `  ${`world 1 (batch ${2 * r.per_rank_batch}, ${r.world1_threads} threads)`.padEnd(40)} ${r.world1_step_ms_p50.toFixed(1).padStart(8)} ms  ${r.world1_steps_per_s} steps/s`,
    `  ${`world 2 (batch ${r.per_rank_batch}/rank, ${r.world2_threads_per_rank} threads/rank)`.padEnd(40)} ${r.world2_step_ms_p50.toFixed(1).padStart(8)} ms  ${r.world2_steps_per_s} steps/s`,
    `  world 2 / world 1 steps/s: ${r.world2_over_world1}`,
    `  bytes per step per rank, measured by the ranks' counters (${r.computed.join(', ')} computed): ${kb(r.bytes_per_step)}`,
    ...kinds.map((k) => `    ${k.padEnd(18)} ${kb(bd[k]!).padStart(12)}  ${r.computed.includes(k) ? '(computed)' : `${r.calls_per_step[k]} calls`}`),
    `  computed from the model: ${kb(r.bytes_computed.total)}${r.ranks_agree ? '' : "; the ranks' counters differ"}`,
    `  R101 (paper settings, ${(r.r101.grad_elements / 1e6).toFixed(1)} M DDP parameters): ${mb(r.r101.bytes_per_step)} per step; ring all-reduce of the gradients (estimate):`,
    ...r.r101.ring_allreduce_ms_estimate.map((l) => `    ${l.setup.padEnd(28)} ${String(l.gbps).padStart(5)} GB/s  ${l.ms.toFixed(1).padStart(7)} ms`),
  ].join('\n')
}
