// A run's TensorBoard: the Experiment hands it every step, evaluation and recovery; it writes
// scalars, each rank's memory at each evaluation, and, at each evaluation, picture strips of the
// first `log.val_images` val images (input | ground truth | prediction | σ², one σ² scale per
// evaluation) and as many unlabeled images through the unlabeled branch (weak view | pseudo-label |
// confidence | mixed input | mixed label | σ²) into the run directory.
// The strips also go to `pictures/step-<n>/` for the HTML report.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ExperimentConfig } from '../config/schema.ts'
import type { RunData } from '../experiment/data.ts'
import type { EvalEvent } from '../experiment/evaluate.ts'
import type { StepEvent } from '../experiment/metrics-log.ts'
import type { Recovery } from '../experiment/recovery.ts'
import { readsOnlyLabeled } from '../loss/spec.ts'
import type { WorkerGroup } from '../worker/group.ts'
import { evalScalars, stepScalars } from './scalars.ts'
import { UNLABELED_PANELS, unlabeledStrips, valStrips } from './strips.ts'
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
  async eval(ev: EvalEvent, group: WorkerGroup, data: RunData, perEpoch: number): Promise<void> {
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
    const nu = readsOnlyLabeled(this.cfg.loss) ? 0 : Math.min(this.cfg.log.val_images, data.unlabeled.length)
    const views = nu ? await unlabeledStrips(group, this.cfg, data, nu, ev.step, perEpoch) : []
    const dir = join(this.runDir, 'pictures', `step-${ev.step}`)
    mkdirSync(dir, { recursive: true })
    strips.forEach((s, i) => writeFileSync(join(dir, `val-${i}.png`), s.png))
    views.forEach((s, i) => writeFileSync(join(dir, `unlabeled-${i}.png`), s.png))
    writeFileSync(join(dir, 'pictures.json'), JSON.stringify({
      step: ev.step, model: ev.model, panels: ['input', 'ground truth', 'prediction', 'σ²'], var_max: strips[0]?.varMax ?? 0,
      images: data.val.slice(0, n).map((r, i) => ({ file: `val-${i}.png`, image: r.image })),
      unlabeled_panels: UNLABELED_PANELS, unlabeled_var_max: views[0]?.varMax ?? 0,
      unlabeled: data.unlabeled.slice(0, nu).map((r, i) => ({ file: `unlabeled-${i}.png`, image: r.image })),
    }, null, 2))
    this.writer?.images(ev.step, Object.fromEntries([
      ...strips.map((s, i) => [`val/${i}`, s] as const), ...views.map((s, i) => [`unlabeled/${i}`, s] as const),
    ]))
  }
}
