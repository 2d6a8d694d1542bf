// Picture strips of a few fixed validation images at an evaluation — input | ground truth |
// prediction | σ² — as RGB PNGs for TensorBoard and the report. Class colours are the dataset's
// palette; σ² is drawn on one scale for every strip of an evaluation (its range is returned).
import { encodeRgbPng, vocPalette } from '../data/png.ts'

export interface Strip { png: Uint8Array; width: number; height: number }

/** The label colours of a dataset: Cityscapes' own for its 19 train ids, else the VOC colour map. */
export function paletteFor(dataset: string): Uint8Array {
  if (dataset !== 'cityscapes') return vocPalette()
  const p = vocPalette()
  CITYSCAPES.forEach((c, k) => p.set(c, k * 3))
  return p
}

const CITYSCAPES = [
  [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153], [250, 170, 30],
  [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142],
  [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
]

/** Colour stops of the σ² heat map (low → high), viridis-like. */
const HEAT = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]

/** One strip: the panels side by side with a 2-pixel white gap. `labels` and `pred` are class
 *  indices (255 = ignore, drawn white); `variance` is drawn between 0 and `varMax`. */
export function strip(o: {
  width: number; height: number; image: Uint8Array; labels: Uint8Array | null; pred: Uint8Array
  variance: Float32Array | null; varMax: number; palette: Uint8Array
}): Strip {
  const { width: w, height: h } = o
  const panels: Array<(i: number, out: Uint8Array, at: number) => void> = [
    (i, out, at) => out.set(o.image.subarray(i * 3, i * 3 + 3), at),
  ]
  const classes = (src: Uint8Array) => (i: number, out: Uint8Array, at: number) => {
    const k = src[i]!
    if (k === 255) out.set([255, 255, 255], at)
    else out.set(o.palette.subarray(k * 3, k * 3 + 3), at)
  }
  if (o.labels) panels.push(classes(o.labels))
  panels.push(classes(o.pred))
  const v = o.variance
  if (v) panels.push((i, out, at) => out.set(heat(o.varMax > 0 ? v[i]! / o.varMax : 0), at))
  const gap = 2
  const width = panels.length * w + (panels.length - 1) * gap
  const rgb = new Uint8Array(width * h * 3).fill(255)
  for (let y = 0; y < h; y++) {
    for (let p = 0; p < panels.length; p++) {
      const x0 = p * (w + gap)
      for (let x = 0; x < w; x++) panels[p]!(y * w + x, rgb, (y * width + x0 + x) * 3)
    }
  }
  return { png: encodeRgbPng(width, h, rgb), width, height: h }
}

/** The heat map's colour at t in [0, 1] (clamped; NaN drawn as the lowest). */
export function heat(t: number): number[] {
  const u = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) * (HEAT.length - 1) : 0
  const i = Math.min(HEAT.length - 2, Math.floor(u))
  const f = u - i
  return HEAT[i]!.map((a, c) => Math.round(a + (HEAT[i + 1]![c]! - a) * f))
}
