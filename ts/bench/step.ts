// `prcl bench step`: train steps of a real worker driven over ZeroMQ, with the worker's own split
// of each step into phases (medians over the timed steps).
import { paperSettings, stepArgs, syntheticBatch, tinySettings } from '../worker/settings.ts'
import { Worker } from '../worker/worker.ts'
import { machine } from './wire.ts'

export interface StepBenchOptions {
  model?: 'tiny' | 'r101'
  steps?: number
  device?: string
}

export async function stepBench(o: StepBenchOptions = {}) {
  const model = o.model ?? 'tiny'
  // R101 at the paper's VOC shapes: 2 + 2 crops of 321×321, 21 classes.
  const settings = model === 'tiny' ? tinySettings() : paperSettings({ deterministic: false }, { epochs: 200 })
  const size = model === 'tiny' ? 65 : 321
  const classes = settings.model.num_classes
  const steps = o.steps ?? (model === 'tiny' ? 20 : 3)
  const worker = await Worker.start({ device: o.device ?? 'auto', log: 'silent' })
  try {
    await worker.call('configure', settings, { timeoutMs: 600_000 })
    const tensors = syntheticBatch({ batch: 2, size, classes, seed: 7 })
    const phases: Record<string, number[]> = {}
    const walls: number[] = []
    for (let s = 0; s < steps + 2; s++) {
      const t0 = performance.now()
      const r = await worker.call('train_step', {
        ...stepArgs(settings, s), mix: [{ seed: s }, { seed: s + 1000 }],
      }, { tensors, timeoutMs: 600_000 })
      if (s < 2) continue // warm-up
      walls.push(performance.now() - t0)
      for (const [k, v] of Object.entries(r.body.time_ms)) (phases[k] ??= []).push(v)
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
    const r2 = (x: number) => Math.round(x * 100) / 100
    return {
      model, steps, image_size: size, device: worker.hello.device_name,
      step_ms_p50: r2(med(walls)),
      phases_ms_p50: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, r2(med(v))])),
      loss_share: r2(med(phases.loss!) / med(phases.total!)),
      machine: machine(worker),
    }
  } finally {
    await worker.close()
  }
}

export function stepTable(r: Awaited<ReturnType<typeof stepBench>>): string {
  const rows = Object.entries(r.phases_ms_p50).map(([k, v]) => `  ${k.padEnd(18)} ${v.toFixed(1).padStart(9)} ms`)
  return [`train step, ${r.model} model, 2+2 images of ${r.image_size}x${r.image_size}, on ${r.device}; medians of ${r.steps} steps`,
    `  driver wall time   ${r.step_ms_p50.toFixed(1).padStart(9)} ms`, ...rows,
    `  PRCL loss share of the step: ${(r.loss_share * 100).toFixed(1)}%`].join('\n')
}
