// `prcl bench data`: can the input path feed a GPU? Images per second through read (the driver's
// files) → send (ZeroMQ) → decode (the worker's decode threads) → augment (the worker's device),
// at VOC size (500×375 JPEG) and Cityscapes size (2048×1024 PNG), with each preset's batch and
// augmentation, two requests in flight as in training. No model runs: this is the ceiling the
// data path puts on the step rate.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { preset } from '../config/presets.ts'
import { ROOT } from '../paths.ts'
import { drawLabeled, drawUnlabeledCrop } from '../policy/augment.ts'
import { Rng } from '../rng.ts'
import { bytesTensor, type Tensors } from '../wire/tensor.ts'
import { findPython } from '../worker/python.ts'
import { Worker } from '../worker/worker.ts'
import { machine } from './wire.ts'

export interface Kind { name: 'voc' | 'cityscapes'; preset: string; width: number; height: number; format: 'JPEG' | 'PNG'; files: number }
/** The two image sizes, each with its preset's batch and augmentation (files: bench/make_images.py). */
export const KINDS: Kind[] = [
  { name: 'voc', preset: 'voc-662-prcl', width: 500, height: 375, format: 'JPEG', files: 16 },
  { name: 'cityscapes', preset: 'cityscapes-150-prcl', width: 2048, height: 1024, format: 'PNG', files: 12 },
]

export interface DataCase {
  dataset: Kind['name']
  image: string
  /** Labeled + unlabeled images in one request (the preset's batch per GPU, twice). */
  batch: number
  decode_threads: number
  device: string
  images_per_s: number
  steps_per_s: number
  /** images_per_s over decode_threads: what one more host core adds (while it scales). */
  images_per_s_per_thread: number
  /** Images (with their labels) one core decodes per second: the host work a GPU step needs
   *  when augmentation runs on the GPU (measured with one decode thread; a lower bound with more). */
  decoded_per_core_s: number
  /** Per request, medians: the driver reading the files, the worker decoding them (on its decode
   *  threads, ahead of the request), the worker augmenting them (on its device). */
  read_ms: number
  decode_ms: number
  augment_ms: number
  file_kb: number
}

export async function dataBench(o: { steps?: number; device?: string; decodeThreads?: number[]; dataset?: string; python?: string } = {}) {
  const steps = o.steps ?? 20
  const kinds = o.dataset ? KINDS.filter((k) => k.name === o.dataset) : KINDS
  if (!kinds.length) throw new Error(`--dataset ${o.dataset}: voc or cityscapes`)
  const dir = mkdtempSync(join(tmpdir(), 'prcl-bench-data-'))
  try {
    const { python } = await findPython(o.python)
    const make = join(ROOT, 'bench', 'make_images.py')
    await Promise.all(kinds.map((k) => promisify(execFile)(python, [make, dir, k.name, String(k.width), String(k.height), k.format, String(k.files)])))
    const cases: DataCase[] = []
    for (const threads of o.decodeThreads ?? [1, 0]) {
      const worker = await Worker.start({ device: o.device ?? 'auto', decodeThreads: threads || undefined, log: 'silent', python })
      try {
        for (const k of kinds) cases.push(await measure(worker, k, dir, steps))
      } finally {
        await worker.close()
      }
    }
    const headline = cases.at(-kinds.length)!
    return { images_per_s: headline.images_per_s, steps_per_s: headline.steps_per_s, headline: `${headline.dataset}, ${headline.decode_threads} decode threads`, cases, steps, machine: machine() }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** One request's input_probe arguments for `k`: the preset's batch, augmentation drawn as a step's. */
export function probeBody(k: Kind, rng: Rng) {
  const cfg = preset(k.preset)!
  const b = cfg.sampling.batch_size
  const size = { height: k.height, width: k.width }
  return {
    num_classes: cfg.model.num_classes,
    labeled_aug: Array.from({ length: b }, () => drawLabeled(rng, cfg, size)),
    unlabeled_crop: Array.from({ length: b }, () => drawUnlabeledCrop(rng, cfg, size)),
  }
}

async function measure(worker: Worker, k: Kind, dir: string, steps: number): Promise<DataCase> {
  const b = preset(k.preset)!.sampling.batch_size
  const rng = Rng.keyed(0, 99)
  const ext = k.format === 'JPEG' ? 'jpg' : 'png'
  const reads: number[] = []
  let fileBytes = 0
  let next = 0
  const request = async () => {
    const t0 = performance.now()
    const tensors: Tensors = {}
    const pick = () => next++ % k.files
    for (let i = 0; i < b; i++) {
      const f = pick()
      const [img, lbl] = await Promise.all([readFile(join(dir, `${k.name}-${f}.${ext}`)), readFile(join(dir, `${k.name}-${f}-label.png`))])
      tensors[`img_l.${i}`] = bytesTensor(img)
      tensors[`lbl_l.${i}`] = bytesTensor(lbl)
      tensors[`img_u.${i}`] = bytesTensor(await readFile(join(dir, `${k.name}-${pick()}.${ext}`)))
      fileBytes += img.length
    }
    reads.push(performance.now() - t0)
    return worker.call('input_probe', probeBody(k, rng), { tensors, timeoutMs: 600_000 })
  }
  const warm = 2
  const results: Array<{ decode_ms: number; augment_ms: number; decode_threads: number }> = []
  let started = 0
  // Two requests in flight, as the training pipeline keeps them: the worker decodes one while it
  // augments the other.
  const inflight: Array<ReturnType<typeof request>> = [request(), request()]
  for (let s = 0; s < steps + warm; s++) {
    const r = await inflight.shift()!
    if (s === warm - 1) started = performance.now()
    if (s >= warm) results.push(r.body as (typeof results)[number])
    if (s + 2 < steps + warm) inflight.push(request())
  }
  const seconds = (performance.now() - started) / 1000
  const threads = results[0]!.decode_threads
  const median = (xs: number[]) => [...xs].sort((a, c) => a - c)[Math.floor(xs.length / 2)]!
  const r2 = (x: number) => Math.round(x * 100) / 100
  const imagesPerS = (steps * 2 * b) / seconds
  const decodeMs = median(results.map((r) => r.decode_ms))
  return {
    dataset: k.name, image: `${k.width}×${k.height} ${k.format}`, batch: 2 * b, decode_threads: threads, device: worker.hello.device,
    images_per_s: r2(imagesPerS), steps_per_s: r2(steps / seconds), images_per_s_per_thread: r2(imagesPerS / threads),
    decoded_per_core_s: r2((2 * b * 1000) / (decodeMs * threads)),
    read_ms: r2(median(reads)), decode_ms: r2(decodeMs), augment_ms: r2(median(results.map((r) => r.augment_ms))),
    file_kb: Math.round(fileBytes / (reads.length * b) / 1024),
  }
}

export function dataTable(r: Awaited<ReturnType<typeof dataBench>>): string {
  const rows = r.cases.map((c) => `  ${c.dataset.padEnd(10)} ${c.image.padEnd(15)} ${String(c.batch).padStart(5)} ${String(c.decode_threads).padStart(7)}  ` +
    `${c.images_per_s.toFixed(1).padStart(8)} ${c.steps_per_s.toFixed(2).padStart(7)} ${c.images_per_s_per_thread.toFixed(1).padStart(8)}  ` +
    `${c.read_ms.toFixed(1).padStart(6)} ${c.decode_ms.toFixed(1).padStart(7)} ${c.augment_ms.toFixed(1).padStart(7)}  ${c.device.padEnd(6)}  ${c.decoded_per_core_s.toFixed(1)}`)
  return [
    `input path: read → send → decode → augment, no model; ${r.steps} timed requests per row, two in flight`,
    '  dataset    image           batch threads  images/s steps/s  /thread  read ms  decode  augment  device  decoded/core/s',
    ...rows,
  ].join('\n')
}

