// Picture strips — panels side by side as one RGB PNG — for TensorBoard and the report: class maps
// in the dataset's palette, confidence and σ² as heat maps on one scale per evaluation.
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

/** A panel of a strip: an RGB image, class indices (255 = ignore, drawn white) in the palette's
 *  colours, or values drawn as a heat map between 0 and `max`. */
export type Panel =
  | { kind: 'rgb'; data: Uint8Array }
  | { kind: 'classes'; data: Uint8Array }
  | { kind: 'heat'; data: Float32Array; max: number }

/** The panels (each `width` × `height`) side by side with a 2-pixel white gap. */
export function strip(o: { width: number; height: number; panels: Panel[]; palette: Uint8Array }): Strip {
  const { width: w, height: h, panels } = o
  const gap = 2
  const width = panels.length * w + (panels.length - 1) * gap
  const rgb = new Uint8Array(width * h * 3).fill(255)
  panels.forEach((p, n) => {
    const x0 = n * (w + gap)
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x
        const at = (y * width + x0 + x) * 3
        if (p.kind === 'rgb') rgb.set(p.data.subarray(i * 3, i * 3 + 3), at)
        else if (p.kind === 'classes') {
          const k = p.data[i]!
          rgb.set(k === 255 ? [255, 255, 255] : o.palette.subarray(k * 3, k * 3 + 3), at)
        } else rgb.set(heat(p.max > 0 ? p.data[i]! / p.max : 0), at)
      }
    }
  })
  return { png: encodeRgbPng(width, h, rgb), width, height: h }
}

/** The heat map's colour at t in [0, 1] (clamped; NaN drawn as the lowest). */
export function heat(t: number): number[] {
  const u = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) * (HEAT.length - 1) : 0
  const i = Math.min(HEAT.length - 2, Math.floor(u))
  const f = u - i
  return HEAT[i]!.map((a, c) => Math.round(a + (HEAT[i + 1]![c]! - a) * f))
}
