// Evaluation of a configured worker (or group of ranks) on the validation split, and of a saved
// checkpoint. With several ranks the val images are dealt round-robin (image i to rank i mod N);
// each rank scores its own with no collective and the driver sums the confusion matrices, so the
// score is one number whatever the world size. As released (eval.ranks: each, random crops), every
// rank scores every image on crops of its own and rank 0's score is the one reported.
import { join } from 'node:path'
import type { ExperimentConfig } from '../config/schema.ts'
import { readSample } from '../data/dataset.ts'
import { Rng, STREAM } from '../rng.ts'
import { evalProtocol, type EvalProtocol } from './protocol.ts'
import { bytesTensor, type Tensors } from '../wire/tensor.ts'
import { WorkerGroup, WorkerGroupError } from '../worker/group.ts'
import { Worker } from '../worker/worker.ts'
import { verifyCheckpoint } from './checkpoint.ts'
import { checkConfig } from '../config/check.ts'
import { loadRunData, type RunData } from './data.ts'
import { iouFromConfusion, type IoUResult } from './metrics.ts'
import { workerSettings } from './settings.ts'

export interface EvalEvent extends IoUResult {
  type: 'eval'; step: number; epoch: number; model: string
  /** The protocol's kind (whole, sliding, prcl_random_crop); its every setting in eval_protocol. */
  protocol: string
  eval_protocol: EvalProtocol
  classes: string[]
  /** Pixels by ground-truth class (rows) and predicted class (columns), row-major. */
  confusion: number[]
  /** eval.ranks each: every rank's mIoU on its own crops (the event's numbers are rank 0's). */
  rank_miou?: number[]
}

/** Confusion over the val split (encoded images, scored at their own size), then IoU. */
export async function evaluateOn(workers: Worker | WorkerGroup, cfg: ExperimentConfig, data: RunData, step: number, epoch: number,
  model: 'teacher' | 'student' = cfg.eval.model): Promise<EvalEvent> {
  const group = workers instanceof WorkerGroup ? workers : WorkerGroup.of(workers)
  const c = cfg.model.num_classes
  const each = (cfg.eval.ranks ?? 'deal') === 'each' && group.size > 1
  // One confusion matrix per rank under `each`, else one for all.
  const cms = Array.from({ length: each ? group.size : 1 }, () => new Float64Array(c * c))
  const chunk = 4
  const protocol = evalProtocol(cfg)
  const args = {
    model, mode: protocol.kind === 'prcl_random_crop' ? 'crop' as const : protocol.kind,
    ...(protocol.window ? { window: protocol.window } : {}), ...(protocol.stride ? { stride: protocol.stride } : {}),
    ...(protocol.crop ? { crop: protocol.crop } : {}), scales: protocol.scales, flip: protocol.flip,
    ...(data.dataset.labelLut ? { label_lut: data.dataset.labelLut } : {}),
  }
  // The released protocol's crops, one per val image in split order: drawn from (seed, step), so
  // an evaluation is the same at any world size, after a resume, and again in prcl eval. Under
  // `each`, rank r > 0 draws its own from (seed, step, r); rank 0's are those.
  const crops = (rank: number) => {
    const rng = rank === 0 ? Rng.keyed(cfg.seed, STREAM.evalCrop, step) : Rng.keyed(cfg.seed, STREAM.evalCrop, step, rank)
    return data.val.map(() => [rng.float(), rng.float()])
  }
  const ats = protocol.crop ? Array.from({ length: cms.length }, (_, r) => crops(r)) : null
  const lane = async (rank: number) => {
    const cm = cms[each ? rank : 0]!
    const at = ats && ats[each ? rank : 0]!
    const mine = data.val.map((ref, i) => ({ ref, i })).filter(({ i }) => each || i % group.size === rank)
    for (let i = 0; i < mine.length; i += chunk) {
      const batch = mine.slice(i, i + chunk)
      const refs = batch.map((p) => p.ref)
      const tensors: Tensors = {}
      const samples = await Promise.all(refs.map((r) => readSample(r)))
      samples.forEach((s, j) => { tensors[`img.${j}`] = bytesTensor(s.image); tensors[`lbl.${j}`] = bytesTensor(s.label!) })
      const body = at ? { ...args, crop_at: batch.map((p) => at[p.i]!) } : args
      const r = await group.call(rank, 'eval_step', body, { tensors, timeoutMs: 3_600_000 }).catch((e: Error) => { throw nameSamples(e, refs) })
      const part = r.tensors.confusion!.data as BigInt64Array
      for (let k = 0; k < c * c; k++) cm[k]! += Number(part[k]!)
    }
  }
  await Promise.all(Array.from({ length: group.size }, (_, r) => lane(r)))
  const reduce = cfg.eval.miou_reduce ?? 'present'
  return {
    type: 'eval', step, epoch, model, protocol: protocol.kind, eval_protocol: protocol, classes: data.dataset.classNames,
    ...iouFromConfusion(cms[0]!, c, reduce), confusion: Array.from(cms[0]!),
    ...(each ? { rank_miou: cms.map((m) => iouFromConfusion(m, c, reduce).miou) } : {}),
  }
}

/** A worker's error about a request's `img.<i>` / `lbl.<i>` tensor, with the file each came from
 *  named in its message (the error keeps its class; other errors are returned as they are). */
export function nameSamples<E extends Error>(e: E, refs: ReadonlyArray<{ image: string; label: string | null }>): E {
  if (!(e instanceof Error) || typeof e.message !== 'string') return e
  const named = e.message.replace(/\b(img|lbl)\.(\d+)\b/g, (m, kind: string, i: string) => {
    const ref = refs[Number(i)]
    const file = ref && (kind === 'img' ? ref.image : ref.label)
    return file ? `${kind === 'img' ? 'image' : 'label'} ${file}` : m
  })
  if (named !== e.message) {
    try { e.message = named } catch { /* a read-only message stays as it was */ }
  }
  return e
}

/** The networks every rank must hold identically at an evaluation under data parallelism: DDP
 *  keeps the student's and head's parameters in step and the teacher follows them by the same EMA;
 *  their BatchNorm buffers may drift apart between evaluations (without broadcast_buffers or
 *  SyncBN, a teacher's own statistics follow each rank's batches) and are made rank 0's first. */
export const REPLICATED = ['teacher', 'student', 'head'] as const

export interface ReplicaEvent {
  type: 'replicas'; step: number; epoch: number; ranks: number; networks: string[]
  /** True when every rank's hashes equal rank 0's. */
  identical: boolean
  /** Rank 0's sha256 of each network's parameters and buffers. */
  hashes: Record<string, string>
  /** For each network that differs, the ranks whose hash is not rank 0's. */
  differ: Record<string, number[]>
}

/** Give every rank rank 0's BatchNorm buffers (the `align_buffers` op), then ask every rank for
 *  the sha256 of its networks' parameters and buffers (`state_hash`) and compare them with rank
 *  0's. The event says what was found; `assertReplicas` turns a difference into an error. A group
 *  of one has nothing to compare: null. */
export async function checkReplicas(group: WorkerGroup, step: number, epoch: number): Promise<ReplicaEvent | null> {
  if (group.size < 2) return null
  await group.all('align_buffers', () => ({}), { timeoutMs: 600_000 })
  const networks = [...REPLICATED]
  const replies = await group.all('state_hash', () => ({ networks }), { timeoutMs: 600_000 })
  const hashes = replies.map((r) => r.body.hashes)
  const differ: Record<string, number[]> = {}
  for (const n of networks) {
    const ranks = hashes.map((h, r) => (h[n] !== hashes[0]![n] ? r : -1)).filter((r) => r > 0)
    if (ranks.length) differ[n] = ranks
  }
  const identical = Object.keys(differ).length === 0
  return { type: 'replicas', step, epoch, ranks: group.size, networks, identical, hashes: hashes[0]!, differ }
}

/** The error of a check that found ranks whose networks differ from rank 0's (nothing otherwise). */
export function assertReplicas(ev: ReplicaEvent): void {
  if (ev.identical) return
  const ranks = [...new Set(Object.values(ev.differ).flat())].sort((a, b) => a - b)
  const which = ranks.map((r) => `rank ${r} (${Object.keys(ev.differ).filter((n) => ev.differ[n]!.includes(r)).join(', ')})`)
  throw new WorkerGroupError(`the data-parallel ranks diverged at step ${ev.step}: parameters differ from rank 0's on ${which.join('; ')}. ` +
    `Every rank must hold the same ${ev.networks.join(', ')} (compared by the sha256 of their parameters and, once rank 0's are given to every rank, buffers); the run is stopped, ` +
    'since its evaluation and checkpoints would depend on which rank was asked', ranks)
}

/** Load a run's checkpoint (`best` or `latest`) into one worker, configured as the run was (of a
 *  run with several ranks, rank 0's state: evaluation and prediction need no group). The worker
 *  runs on `python` or this environment's interpreter, never the one the run's config names (a
 *  run directory does not choose the program that runs). */
export async function loadCheckpointWorker(runDir: string, which: string, o: { worker?: Worker; python?: string } = {}) {
  const ck = await verifyCheckpoint(join(runDir, 'checkpoints', which))
  const w = o.worker ?? await Worker.start({ python: o.python, device: ck.config.worker.device, log: 'silent' })
  try {
    await w.call('configure', workerSettings(ck.config, null, { runDir: ck.dir }), { timeoutMs: 600_000 })
    await w.call('load', { path: ck.workerFile }, { timeoutMs: 600_000 })
  } catch (e) {
    if (!o.worker) await w.close()
    throw e
  }
  return { worker: w, checkpoint: ck, owned: !o.worker }
}

/** Evaluate a saved checkpoint on the run's val split, with both networks when asked. */
/** `eval`: another protocol than the run's (sliding and the random crop take the run's
 *  eval.window, else the training crop, and a stride of 2/3 of the window). */
export async function evaluateCheckpoint(runDir: string, o: {
  which?: string; models?: Array<'teacher' | 'student'>; worker?: Worker; python?: string; eval?: Partial<ExperimentConfig['eval']>
} = {}) {
  const { worker, checkpoint, owned } = await loadCheckpointWorker(runDir, o.which ?? 'best', o)
  try {
    const cfg = withEval(checkpoint.config, o.eval ?? {})
    // The val images and labels checked first (a label value outside the classes would otherwise
    // drop out of the confusion matrix without a word).
    const data = await loadRunData(cfg, { check: 'fast', lists: ['val'] })
    const out: EvalEvent[] = []
    for (const m of o.models ?? [cfg.eval.model]) {
      out.push(await evaluateOn(worker, cfg, data, checkpoint.state.step, checkpoint.state.epoch, m))
    }
    return { checkpoint: checkpoint.dir, results: out }
  } finally {
    if (owned) await worker.close()
  }
}

function withEval(cfg: ExperimentConfig, over: Partial<ExperimentConfig['eval']>): ExperimentConfig {
  const e = { ...cfg.eval, ...over }
  if (e.protocol === 'sliding' && (!e.window || !e.stride)) {
    const window = e.window ?? cfg.data.labeled.crop
    e.window = window
    e.stride ??= window.map((w) => Math.max(1, Math.floor((w * 2) / 3)))
  }
  return checkConfig({ ...cfg, eval: e }, 'the evaluation settings')
}
