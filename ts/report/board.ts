// A run's TensorBoard: the Experiment hands it every step, evaluation and recovery; it writes
// scalars, each rank's memory at each evaluation, and, at each evaluation, picture strips of the first `log.val_images` val images
// (input | ground truth | prediction | σ², one σ² scale per evaluation) into the run directory.
// The strips also go to `pictures/step-<n>/` for the HTML report.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ExperimentConfig } from '../config/schema.ts'
import { readSample } from '../data/dataset.ts'
import { decodeLabelPng } from '../data/png-decode.ts'
import type { RunData } from '../experiment/data.ts'
import type { EvalEvent } from '../experiment/evaluate.ts'
import type { StepEvent } from '../experiment/metrics-log.ts'
import type { Recovery } from '../experiment/recovery.ts'
import { bytesTensor } from '../wire/tensor.ts'
import type { WorkerGroup } from '../worker/group.ts'
import { paletteFor, strip, type Strip } from './pictures.ts'
import { evalScalars, stepScalars } from './scalars.ts'
import { EventWriter } from './tensorboard.ts'

export class RunBoard {
  private readonly writer: EventWriter | null

  constructor(private readonly runDir: string, private readonly cfg: ExperimentConfig) {
    this.writer = cfg.log.tensorboard ? new EventWriter(runDir) : null
  }

  step(ev: StepEvent): void {
    this.writer?.scalars(ev.step, stepScalars(ev))
  }

  recovery(r: Recovery): void {
    this.writer?.scalars(r.step, { 'run/recovery': r.attempt })
  }

  /** The evaluation's scalars, and its picture strips (drawn by rank 0). */
  async eval(ev: EvalEvent, group: WorkerGroup, data: RunData): Promise<void> {
    this.writer?.scalars(ev.step, evalScalars(ev))
    if (this.writer) {
      // Each rank's memory (the GPU's when on one), at each evaluation: the pipeline is drained.
      const stats = await group.all('stats', () => ({}))
      this.writer.scalars(ev.step, Object.fromEntries(stats.flatMap((r, rank) => [
        [`worker/rank${rank}/rss_mb`, r.body.rss_mb],
        ...(r.body.cuda_allocated_mb === null ? [] : [[`worker/rank${rank}/cuda_allocated_mb`, r.body.cuda_allocated_mb]]),
      ])))
    }
    const n = Math.min(this.cfg.log.val_images, data.val.length)
    if (n === 0) return
    const strips = await valStrips(group, this.cfg, data, n, ev.model as 'teacher' | 'student')
    const dir = join(this.runDir, 'pictures', `step-${ev.step}`)
    mkdirSync(dir, { recursive: true })
    strips.forEach((s, i) => writeFileSync(join(dir, `val-${i}.png`), s.png))
    writeFileSync(join(dir, 'pictures.json'), JSON.stringify({
      step: ev.step, model: ev.model, panels: ['input', 'ground truth', 'prediction', 'σ²'], var_max: strips[0]?.varMax ?? 0,
      images: data.val.slice(0, n).map((r, i) => ({ file: `val-${i}.png`, image: r.image })),
    }, null, 2))
    this.writer?.images(ev.step, Object.fromEntries(strips.map((s, i) => [`val/${i}`, s])))
  }
}

/** Strips of the first `n` val images: the worker predicts classes and σ² and hands back the image
 *  as it decoded it; labels are read here (through the dataset's label LUT). */
async function valStrips(group: WorkerGroup, cfg: ExperimentConfig, data: RunData, n: number, model: 'teacher' | 'student'): Promise<Array<Strip & { varMax: number }>> {
  const refs = data.val.slice(0, n)
  const samples = await Promise.all(refs.map((r) => readSample(r)))
  const tensors = Object.fromEntries(samples.map((s, i) => [`img.${i}`, bytesTensor(s.image)]))
  const r = await group.call(0, 'predict', { model, outputs: ['classes', 'var', 'image'] }, { tensors, timeoutMs: 600_000 })
  const lut = data.dataset.labelLut
  const palette = paletteFor(cfg.data.dataset)
  const vars = refs.map((_, i) => r.tensors[`var.${i}`]!.data as Float32Array)
  const varMax = Math.max(0, ...vars.map((v) => v.reduce((m, x) => (x > m ? x : m), 0)))
  return refs.map((ref, i) => {
    const image = r.tensors[`image.${i}`]!
    const [height, width] = image.shape as [number, number, number]
    const raw = samples[i]!.label ? decodeLabelPng(samples[i]!.label!, ref.label!).data : null
    const labels = raw && lut ? raw.map((v) => lut[v]!) : raw
    const pred = r.tensors[`classes.${i}`]!.data as Uint8Array
    return { ...strip({ width, height, image: image.data as Uint8Array, labels, pred, variance: vars[i]!, varMax, palette }), varMax }
  })
}
