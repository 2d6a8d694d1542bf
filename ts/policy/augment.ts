// Every augmentation parameter of a step, drawn by the driver (spec §5): the worker applies them.
import type { Static } from 'typebox'
import type { ExperimentConfig } from '../config/schema.ts'
import type { ImageAug } from '../wire/ops/training.ts'
import type { Rng } from '../rng.ts'

type ImageAugParams = Static<typeof ImageAug>
type Photometric = ExperimentConfig['data']['labeled']['photometric']

/** Scale, then pad right/bottom to the crop if smaller, then a uniform crop position (§5.1). */
export function drawRescale(rng: Rng, height: number, width: number, scale: number, crop: number[]) {
  const [ch, cw] = crop as [number, number]
  const ph = Math.max(Math.floor(height * scale), ch)
  const pw = Math.max(Math.floor(width * scale), cw)
  return { scale, top: rng.int(0, ph - ch), left: rng.int(0, pw - cw), crop_h: ch, crop_w: cw }
}

export function drawPhotometric(rng: Rng, p: Photometric): Pick<ImageAugParams, 'jitter' | 'blur' | 'flip'> {
  const j = p.jitter
  const jitter = rng.chance(j.p)
    ? {
        brightness: rng.uniform(1 - j.brightness, 1 + j.brightness),
        contrast: rng.uniform(1 - j.contrast, 1 + j.contrast),
        saturation: rng.uniform(1 - j.saturation, 1 + j.saturation),
        hue: rng.uniform(-j.hue, j.hue),
        order: rng.permutation(4),
      }
    : null
  const blur = rng.chance(p.blur.p) ? { sigma: rng.uniform(p.blur.sigma[0]!, p.blur.sigma[1]!) } : null
  return { jitter, blur, flip: rng.chance(p.flip) }
}

/** The labeled loader's augmentation of one image of the given size. */
export function drawLabeled(rng: Rng, cfg: ExperimentConfig, size: { height: number; width: number }): ImageAugParams {
  const d = cfg.data.labeled
  const scale = rng.uniform(d.scale[0]!, d.scale[1]!)
  return { rescale: drawRescale(rng, size.height, size.width, scale, d.crop), ...drawPhotometric(rng, d.photometric) }
}

/** The unlabeled loader's raw crop (scale 1), what the teacher sees. */
export function drawUnlabeledCrop(rng: Rng, cfg: ExperimentConfig, size: { height: number; width: number }): ImageAugParams {
  return { rescale: drawRescale(rng, size.height, size.width, 1, cfg.data.unlabeled.crop) }
}

/** The in-model re-crop and photometric augmentation of the unlabeled triple (§4 steps 3, 5). */
export function drawUnlabeledAug(rng: Rng, cfg: ExperimentConfig): ImageAugParams {
  const u = cfg.data.unlabeled
  const [h, w] = u.crop as [number, number]
  const scale = rng.uniform(u.rescale[0]!, u.rescale[1]!)
  return { rescale: drawRescale(rng, h, w, scale, u.crop), ...drawPhotometric(rng, u.photometric) }
}

/** Mixing parameters per image: a seed for ClassMix, a box for CutMix/CutOut (§6, box law fixed to integers). */
export function drawMix(rng: Rng, mode: string, batch: number, crop: number[]): Array<{ seed?: number; box?: number[] }> {
  const [h, w] = crop as [number, number]
  return Array.from({ length: batch }, () => {
    if (mode === 'classmix') return { seed: rng.seed32() }
    if (mode === 'cutmix' || mode === 'cutout') {
      const bw = rng.int(Math.min(w - 1, Math.floor(w / 2) + 1), Math.max(1, w - 1))
      const bh = Math.min(h, Math.max(1, Math.round((h * w) / 2 / bw)))
      return { box: [rng.int(0, h - bh), rng.int(0, w - bw), bh, bw] }
    }
    return {}
  })
}
