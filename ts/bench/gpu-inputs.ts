// `prcl bench gpu-inputs`: what bench/gpu_check.py needs on a GPU machine without Node — each
// case's configure settings and its train_step (or input_probe) arguments, resolved here by the
// driver's own code —
// written to bench/gpu/inputs.json (checked in; regenerate after changing presets or the wire).
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { preset } from '../config/presets.ts'
import { workerSettings } from '../experiment/settings.ts'
import { progressAt } from '../policy/progress.ts'
import { stepScalars } from '../policy/scalars.ts'
import { ROOT } from '../paths.ts'
import { Rng } from '../rng.ts'
import { paperSettings, stepArgs } from '../worker/settings.ts'
import { KINDS, probeBody } from './data.ts'

export function gpuInputs() {
  // DeepLabV3+ ResNet-101 at the paper's VOC settings (random weights: the check times steps).
  const r101 = paperSettings({ deterministic: false }, { epochs: 80 })
  const demoCfg = preset('synthetic-demo')!
  const demo = workerSettings(demoCfg, null)
  const perEpoch = 50
  return {
    made_by: 'prcl bench gpu-inputs',
    cases: {
      r101: { settings: r101, size: 321, classes: r101.model.num_classes, steps: Array.from({ length: 12 }, (_, s) => stepArgs(r101, s)) },
      demo: {
        settings: demo, size: demoCfg.data.labeled.crop[0]!, classes: demoCfg.model.num_classes,
        steps: Array.from({ length: 52 }, (_, s) => ({ step: s + 1, ...stepScalars(demoCfg, progressAt(demoCfg, perEpoch, s)) })),
      },
      // The input path (prcl bench data's requests): image size and format, and the input_probe
      // arguments of a few steps (each preset's batch and augmentation).
      data: KINDS.map((k) => {
        const rng = Rng.keyed(0, 99)
        return { dataset: k.name, width: k.width, height: k.height, format: k.format, requests: Array.from({ length: 4 }, () => probeBody(k, rng)) }
      }),
    },
  }
}

export function writeGpuInputs(): string {
  const path = join(ROOT, 'bench', 'gpu', 'inputs.json')
  mkdirSync(join(ROOT, 'bench', 'gpu'), { recursive: true })
  writeFileSync(path, JSON.stringify(gpuInputs()) + '\n')
  return path
}
