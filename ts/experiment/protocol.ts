// How a score is measured (eval.protocol, its window or crop, test-time scales and flip): taken
// from the configuration, recorded with every result, and said in one line for a person.
import type { ExperimentConfig } from '../config/schema.ts'

/** How a score was measured: recorded with every result (metrics.jsonl, summary.json, prcl eval). */
export interface EvalProtocol {
  kind: ExperimentConfig['eval']['protocol']
  /** sliding: the window and stride; prcl_random_crop: the crop. */
  window?: number[]
  stride?: number[]
  crop?: number[]
  /** Test-time augmentation: the scales averaged over, and whether mirror images were too. */
  scales: number[]
  flip: boolean
}

/** The protocol eval settings describe (the released random crop defaults to the training crop). */
export function evalProtocol(cfg: ExperimentConfig): EvalProtocol {
  const e = cfg.eval
  const tta = { scales: e.scales ?? [1], flip: e.flip ?? false }
  if (e.protocol === 'sliding') return { kind: e.protocol, window: e.window!, stride: e.stride!, ...tta }
  if (e.protocol === 'prcl_random_crop') return { kind: e.protocol, crop: e.window ?? cfg.data.labeled.crop, ...tta }
  return { kind: e.protocol, ...tta }
}

/** One line for a person: `sliding 512×512 every 341×341, scales 0.75/1/1.25 + flip`. */
export function describeProtocol(p: EvalProtocol): string {
  const size = (s?: number[]) => (s ?? []).join('×')
  const base = p.kind === 'sliding' ? `sliding ${size(p.window)} every ${size(p.stride)}`
    : p.kind === 'prcl_random_crop' ? `random ${size(p.crop)} crops (as released)` : 'whole images'
  const tta = p.scales.length > 1 || p.scales[0] !== 1 || p.flip ? `, scales ${p.scales.join('/')}${p.flip ? ' + flip' : ''}` : ''
  return base + tta
}
