// A synthetic segmentation dataset in the Pascal VOC layout, deterministic by seed: what the CPU
// demo and the end-to-end tests train on, through exactly the code path real VOC data takes.
//
//   <out>/JPEGImages/synth_000000.jpg         RGB, baseline JPEG
//   <out>/SegmentationClass/synth_000000.png  palette PNG of class indices (VOC colours), 255 = ignore
//   <out>/splits/<labeled>/<seed>/labeled_filename.txt, unlabeled_filename.txt, valid_filename.txt
//   <out>/classes.txt                         class names, one a line (background first)
//   <out>/synth.json                          options, counts, class pixel fractions, content hash
//
// Each image: a background from one of four families (linear gradient, smooth value noise, soft
// stripes, rotated checker) in random colours, under a mild illumination gradient; 1-4 objects in
// z-order, each a class with a characteristic shape (disc, square, triangle, ring, blob, ...) and a
// characteristic texture (shading, checker, speckle, concentric bands, stripes, dots) in a
// characteristic hue range. Hue ranges of neighbouring classes overlap, one object in ten takes
// any hue, background colours are unconstrained, and background textures reuse the object
// textures: colour or texture alone does not give the class, shape nearly does. Objects are
// rotated, scaled, mildly stretched, may leave the frame and occlude each other; edges are
// anti-aliased (2x2 samples), then pixel noise and JPEG. The label is the instance on top at the
// pixel centre; a pixel whose neighbourhood (±0.7 px along each axis) sees another instance is 255,
// a 1-2 px band on every object outline, as in VOC's boundary annotations.
//
// Same options, same bytes: every random draw comes from a keyed stream of ts/rng.ts, and
// jpeg-js's encoder has no timestamps. Images do not depend on `labeled`: the labeled subset is
// chosen afterwards (every class present, the rest at random), so splits of several sizes can be
// cut from one dataset.
import { join } from 'node:path'
import { chooseLabeled, writeGenerated, type Rendered } from './generated.ts'
import { Rng, STREAM } from '../rng.ts'

export interface SynthOptions {
  /** Output directory; replaced if it holds an earlier synthetic dataset, refused if it holds anything else. */
  out: string
  /** Generation seed, also the split directory's name (default 0). */
  seed?: number
  /** Training images (default 240). */
  images?: number
  /** Image side in pixels: images are square (default 64). */
  size?: number
  /** Classes including background, at most 21 as in VOC (default 5). */
  classes?: number
  /** Labeled training images; every class appears among them (default 16). */
  labeled?: number
  /** Validation images (default 60). */
  val?: number
  /** JPEG quality 1..100 (default 90). */
  quality?: number
  /** Half-width of a class's hue window, in units of the spacing between class hues (default
   *  0.65: neighbouring windows overlap; below 0.5 they are apart and hue nearly gives the class). */
  hueSpread?: number
  /** Fraction of objects that take any hue instead of their class's (default 0.1). */
  anyHue?: number
}

export type ResolvedSynthOptions = Required<SynthOptions>

export interface SynthSummary {
  /** Absolute output directory. */
  out: string
  ids: { train: string[]; val: string[] }
  labeled: string[]
  unlabeled: string[]
  /** Class names, index = label value. */
  classes: string[]
  /** Absolute directory holding the three split files. */
  splitDir: string
  /** Files the hash covers: every file written except synth.json. */
  files: number
  /** sha256 over "<relative path>\0<sha256 hex of the file>\n" for those files in path order. */
  sha256: string
}

/** The generator's version, recorded in synth.json: the same options make other bytes under
 *  another version (2: drawn from ts/rng.ts's keyed streams). */
export const SYNTH_VERSION = 2

export const SYNTH_DEFAULTS = { seed: 0, images: 240, size: 64, classes: 5, labeled: 16, val: 60, quality: 90, hueSpread: 0.65, anyHue: 0.1 } as const

/** The synthetic classes in label order; a dataset with `classes: k` uses the first k. */
export const SYNTH_CLASS_NAMES = [
  'background', 'disc', 'square', 'triangle', 'ring', 'stripe-blob', 'cross', 'star', 'crescent', 'hexagon', 'bar',
  'frame', 'l-shape', 't-shape', 'semicircle', 'trefoil', 'hourglass', 'dumbbell', 'chevron', 'ellipse', 'arc',
] as const

const MAX_OBJECTS = 4
const LIMITS = {
  seed: [0, 0xffffffff],
  images: [1, 1_000_000],
  size: [16, 4096],
  classes: [2, SYNTH_CLASS_NAMES.length],
  val: [0, 1_000_000],
  quality: [1, 100],
} as const

/** `value` as an integer in lo..hi, or a RangeError naming `<what> option <name>` and its range. */
export function checkInt(what: string, name: string, value: unknown, lo: number, hi: number, why = ''): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi) {
    throw new RangeError(`${what} option ${name} must be an integer in ${lo}..${hi}${why}, got ${describeValue(value)}`)
  }
  return value
}

/** A value as an error message shows it: numbers as themselves, anything else with its type. */
export function describeValue(v: unknown): string {
  return typeof v === 'number' ? String(v) : `${typeof v} ${JSON.stringify(v)}`
}

/** Validates the options and fills in the defaults; throws a RangeError naming the bad option and its range. */
export function checkSynthOptions(opts: SynthOptions): ResolvedSynthOptions {
  if (opts === null || typeof opts !== 'object') throw new TypeError('synth options must be an object')
  const known = new Set(['out', ...Object.keys(SYNTH_DEFAULTS)])
  const unknown = Object.keys(opts).filter((k) => !known.has(k))
  if (unknown.length) throw new RangeError(`unknown synth option ${unknown.join(', ')} (known: ${[...known].join(', ')})`)
  if (typeof opts.out !== 'string' || opts.out.trim() === '') throw new RangeError('synth option out must be a non-empty directory path')
  const o = { ...SYNTH_DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as ResolvedSynthOptions
  for (const [name, [lo, hi]] of Object.entries(LIMITS)) checkInt('synth', name, o[name as keyof typeof LIMITS], lo, hi)
  for (const [name, hi] of [['hueSpread', 2], ['anyHue', 1]] as const) {
    const v = o[name]
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > hi) {
      throw new RangeError(`synth option ${name} must be a number in 0..${hi}, got ${describeValue(v)}`)
    }
  }
  // At most MAX_OBJECTS classes per image, so covering every foreground class needs this many labeled images.
  const minLabeled = Math.max(1, Math.ceil((o.classes - 1) / MAX_OBJECTS))
  checkInt('synth', 'labeled', o.labeled, minLabeled, o.images,
    minLabeled > 1 ? ` (at most images = ${o.images}; at least ${minLabeled} so that all ${o.classes} classes can appear)` : ` (at most images = ${o.images})`)
  // Unknown keys were refused above: `o` holds exactly the defaults' keys and out.
  return { ...o, out: opts.out }
}

// ---------------------------------------------------------------------------------------------
// Random numbers: one Rng stream per image, Rng.keyed(seed, STREAM.synthImage, index), and one for
// the labeled subset, Rng.keyed(seed, STREAM.synthSplit) (ts/rng.ts); mix32 only hashes pixel
// coordinates for the speckle texture.

function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x21f0aaad)
  h = Math.imul(h ^ (h >>> 15), 0x735a2d97)
  return (h ^ (h >>> 15)) >>> 0
}

/** Uniform in [0, 1) from integer coordinates: per-pixel speckle without consuming a stream. */
function hash01(x: number, y: number, salt: number): number {
  return mix32(Math.imul(x, 0x27d4eb2d) ^ Math.imul(y, 0x165667b1) ^ salt) / 4294967296
}

// ---------------------------------------------------------------------------------------------
// Colours, shapes, textures.

export type Rgb = [number, number, number]

export function hsv(h: number, s: number, v: number): Rgb {
  h = ((h % 1) + 1) % 1 * 6
  const i = Math.floor(h), f = h - i
  const p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
  const [r, g, b] = i === 0 ? [v, t, p] : i === 1 ? [q, v, p] : i === 2 ? [p, v, t] : i === 3 ? [p, q, v] : i === 4 ? [t, p, v] : [v, p, q]
  return [r * 255, g * 255, b * 255]
}

const enum Tex { Shaded, Checker, Speckle, Bands, Stripes, Dots }

/** Per foreground class (label - 1): the texture that goes with its shape. */
const CLASS_TEXTURE: readonly Tex[] = [
  Tex.Shaded, Tex.Checker, Tex.Speckle, Tex.Bands, Tex.Stripes, // disc square triangle ring stripe-blob
  Tex.Dots, Tex.Shaded, Tex.Speckle, Tex.Stripes, Tex.Checker, // cross star crescent hexagon bar
  Tex.Dots, Tex.Shaded, Tex.Stripes, Tex.Bands, Tex.Checker, // frame l-shape t-shape semicircle trefoil
  Tex.Speckle, Tex.Dots, Tex.Shaded, Tex.Bands, Tex.Stripes, // hourglass dumbbell chevron ellipse arc
]

const TAU = 2 * Math.PI
const SQRT3_2 = Math.sqrt(3) / 2

/** Whether object-frame point (u, v) (units of the object's radius) is inside shape `k` (= label - 1). */
function inside(k: number, u: number, v: number, p1: number, p2: number): boolean {
  switch (k) {
    case 0: return u * u + v * v <= 1 // disc
    case 1: return Math.abs(u) <= 0.8 && Math.abs(v) <= 0.8 // square
    case 2: { // triangle, circumradius 1.15
      const h = 0.575
      return v <= h && SQRT3_2 * u - 0.5 * v <= h && -SQRT3_2 * u - 0.5 * v <= h
    }
    case 3: { const r2 = u * u + v * v; return r2 <= 1.1 && r2 >= 0.3 } // ring
    case 4: { // blob: a wobbly disc
      const a = Math.atan2(v, u)
      const rr = 0.9 + 0.14 * Math.sin(3 * a + p1) + 0.08 * Math.sin(2 * a + p2)
      return u * u + v * v <= rr * rr
    }
    case 5: { const au = Math.abs(u), av = Math.abs(v); return (au <= 0.32 && av <= 1) || (av <= 0.32 && au <= 1) } // cross
    case 6: { // five-pointed star
      const r = Math.sqrt(u * u + v * v)
      const t = ((Math.atan2(u, v) / TAU) * 5 % 1 + 1) % 1
      return r <= 0.45 + 0.65 * Math.abs(1 - 2 * t) ** 1.4 // points where t = 0 or 1
    }
    case 7: { const x = u - 0.5; return u * u + v * v <= 1.05 && x * x + v * v > 0.6 } // crescent
    case 8: { const au = Math.abs(u), av = Math.abs(v); return av <= 0.82 && SQRT3_2 * au + 0.5 * av <= 0.88 } // hexagon (flat top)
    case 9: return Math.abs(u) <= 1.05 && Math.abs(v) <= 0.36 // bar
    case 10: { const m = Math.max(Math.abs(u), Math.abs(v)); return m <= 0.88 && m >= 0.5 } // frame
    case 11: return Math.abs(u) <= 0.85 && Math.abs(v) <= 0.85 && (u <= -0.2 || v >= 0.2) // l-shape
    case 12: return (v >= 0.35 && v <= 0.9 && Math.abs(u) <= 0.9) || (Math.abs(u) <= 0.27 && v >= -0.9 && v < 0.35) // t-shape
    case 13: { const w = v + 0.4; return w >= 0 && u * u + w * w <= 1.1 } // semicircle
    case 14: { // trefoil: three overlapping discs
      for (let i = 0; i < 3; i++) {
        const a = TAU * i / 3 + Math.PI / 2
        const x = u - 0.48 * Math.cos(a), y = v - 0.48 * Math.sin(a)
        if (x * x + y * y <= 0.3) return true
      }
      return false
    }
    case 15: { const av = Math.abs(v); return av <= 0.95 && Math.abs(u) <= 0.85 * av + 0.1 } // hourglass
    case 16: { // dumbbell
      const au = Math.abs(u), x = au - 0.62
      return x * x + v * v <= 0.18 || (au <= 0.62 && Math.abs(v) <= 0.16)
    }
    case 17: { const au = Math.abs(u); return au <= 0.95 && Math.abs(v - (0.9 * au - 0.45)) <= 0.28 } // chevron
    case 18: return (u / 1.05) ** 2 + (v / 0.55) ** 2 <= 1 // ellipse
    case 19: { const r2 = u * u + v * v; return r2 <= 1.1 && r2 >= 0.36 && v >= -0.15 } // arc
    default: return false
  }
}

interface Obj {
  cls: number // label value, 1..classes-1
  cx: number; cy: number; cos: number; sin: number; ix: number; iy: number // centre, rotation, 1/(radius*stretch)
  x0: number; x1: number; y0: number; y1: number // bounding box, pixels
  p1: number; p2: number // shape parameters
  tex: Tex; freq: number; phase: number; lx: number; ly: number; salt: number
  c1: Rgb; c2: Rgb
}

const enum Bg { Gradient, Noise, Stripes, Checker }

interface Background {
  kind: Bg
  c1: Rgb; c2: Rgb
  cos: number; sin: number; freq: number; phase: number; sharp: number
  grid: Float64Array; gn: number // value-noise lattice (gn+1)^2, two octaves stacked
  light: number; lcos: number; lsin: number
  noise: number
}

function randomColour(rng: Rng): Rgb {
  return hsv(rng.float(), rng.uniform(0, 0.85), rng.uniform(0.15, 0.95))
}

function makeBackground(rng: Rng, size: number): Background {
  const kind = rng.below(4) as Bg
  const a = rng.uniform(0, TAU), la = rng.uniform(0, TAU)
  const c1 = randomColour(rng)
  // The second colour: a random one, pulled toward the first now and then for low contrast.
  const r2 = randomColour(rng), pull = rng.float() < 0.3 ? rng.uniform(0.3, 0.7) : 0
  const c2: Rgb = [r2[0] + (c1[0] - r2[0]) * pull, r2[1] + (c1[1] - r2[1]) * pull, r2[2] + (c1[2] - r2[2]) * pull]
  const gn = 3 + rng.below(4)
  const grid = new Float64Array((gn + 1) * (gn + 1) * 2)
  for (let i = 0; i < grid.length; i++) grid[i] = rng.float()
  const freq = kind === Bg.Stripes ? rng.uniform(2, 9) / size : kind === Bg.Checker ? 1 / (size * rng.uniform(0.07, 0.2)) : 0
  return {
    kind, c1, c2, cos: Math.cos(a), sin: Math.sin(a), freq, phase: rng.uniform(0, TAU), sharp: rng.uniform(1, 6),
    grid, gn, light: rng.uniform(-0.35, 0.35), lcos: Math.cos(la), lsin: Math.sin(la), noise: rng.uniform(2, 7),
  }
}

function smooth(t: number): number { return t * t * (3 - 2 * t) }

function valueNoise(bg: Background, x: number, y: number, size: number, octave: number): number {
  const n = bg.gn * (octave + 1)
  const g = bg.gn + 1
  const fx = (x / size) * bg.gn * (octave + 1), fy = (y / size) * bg.gn * (octave + 1)
  const ix = Math.min(Math.floor(fx), n - 1), iy = Math.min(Math.floor(fy), n - 1)
  const tx = smooth(Math.min(1, Math.max(0, fx - ix))), ty = smooth(Math.min(1, Math.max(0, fy - iy)))
  // The lattice wraps (octave 1 has twice the cells over the same gn+1 values).
  const base = octave * g * g, r0 = base + (iy % g) * g, r1 = base + ((iy + 1) % g) * g, c0 = ix % g, c1 = (ix + 1) % g
  const grid = bg.grid
  const a = grid[r0 + c0]!, b = grid[r0 + c1]!, c = grid[r1 + c0]!, d = grid[r1 + c1]!
  return (a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty
}

/** Background mix factor in [0, 1] at (x, y). */
function bgMix(bg: Background, x: number, y: number, size: number): number {
  const h = size / 2
  const along = (x - h) * bg.cos + (y - h) * bg.sin
  switch (bg.kind) {
    case Bg.Gradient: return Math.min(1, Math.max(0, along / size + 0.5))
    case Bg.Noise: return valueNoise(bg, x, y, size, 0) * 0.7 + valueNoise(bg, x, y, size, 1) * 0.3
    case Bg.Stripes: return Math.min(1, Math.max(0, 0.5 + 0.5 * bg.sharp * Math.sin(TAU * bg.freq * along + bg.phase)))
    case Bg.Checker: {
      const across = -(x - h) * bg.sin + (y - h) * bg.cos
      return (Math.floor(along * bg.freq + bg.phase) + Math.floor(across * bg.freq)) & 1
    }
  }
}

/** Object texture mix factor in [0, 1] at object-frame (u, v) / image (x, y). */
function texMix(o: Obj, u: number, v: number, x: number, y: number): number {
  switch (o.tex) {
    case Tex.Shaded: return Math.min(1, Math.max(0, 0.6 + 0.45 * (u * o.lx + v * o.ly) - 0.35 * (u * u + v * v)))
    case Tex.Checker: return (Math.floor(u * o.freq + o.phase) + Math.floor(v * o.freq)) & 1
    case Tex.Speckle: return hash01(Math.floor(x), Math.floor(y), o.salt) ** 0.7
    case Tex.Bands: return 0.5 + 0.5 * Math.sin(TAU * o.freq * Math.sqrt(u * u + v * v) + o.phase)
    case Tex.Stripes: return Math.min(1, Math.max(0, 0.5 + 1.5 * Math.sin(TAU * o.freq * u + o.phase)))
    case Tex.Dots: {
      const fu = u * o.freq + o.phase, fv = v * o.freq
      const du = fu - Math.floor(fu) - 0.5, dv = fv - Math.floor(fv) - 0.5
      return du * du + dv * dv <= 0.09 ? 1 : 0
    }
  }
}

/** Characteristic texture frequency (cycles per radius) per texture. */
const TEX_FREQ: Record<Tex, [number, number]> = {
  [Tex.Shaded]: [0, 0], [Tex.Checker]: [2.2, 3.2], [Tex.Speckle]: [0, 0], [Tex.Bands]: [1.6, 2.4], [Tex.Stripes]: [1.6, 2.4], [Tex.Dots]: [2.0, 2.8],
}

/** Per shape: the radius factor that gives it the area of a 0.8-side square (2.56 units), so classes cover similar pixel counts. */
const SHAPE_SCALE: readonly number[] = CLASS_TEXTURE.map((_, k) => {
  const n = 160, h = 3 / n
  let hits = 0
  for (let j = 0; j < n; j++) for (let i = 0; i < n; i++) if (inside(k, -1.5 + (i + 0.5) * h, -1.5 + (j + 0.5) * h, 0, 0)) hits++
  return Math.sqrt(2.56 / (hits * h * h))
})

/** How object colours follow their class. */
export interface HuePolicy { hueSpread: number; anyHue: number }

function makeObject(rng: Rng, cls: number, nFg: number, size: number, hues: HuePolicy): Obj {
  const k = cls - 1
  const r = size * rng.uniform(0.22, 0.4) * SHAPE_SCALE[k]!
  const sx = rng.uniform(0.85, 1.18), sy = rng.uniform(0.85, 1.18)
  const cx = size * rng.uniform(0.1, 0.9), cy = size * rng.uniform(0.1, 0.9)
  const a = rng.uniform(0, TAU)
  const ext = 1.35 * r * Math.max(sx, sy) + 1
  // Class hue: evenly spaced centres, windows of ±hueSpread spacings (by default wide enough to
  // overlap the neighbours'); a fraction anyHue of objects takes any hue. Both branches draw twice
  // (not rng.chance, which skips its draw at 0), so hue settings never move the shapes.
  const hue = rng.float() < hues.anyHue ? rng.float() : k / nFg + 0.04 + rng.uniform(-hues.hueSpread, hues.hueSpread) / nFg
  const sat = rng.uniform(0.4, 0.95), val = rng.uniform(0.45, 1)
  const tex = CLASS_TEXTURE[k]!
  const [flo, fhi] = TEX_FREQ[tex]
  const la = rng.uniform(0, TAU)
  return {
    cls, cx, cy, cos: Math.cos(a), sin: Math.sin(a), ix: 1 / (r * sx), iy: 1 / (r * sy),
    x0: cx - ext, x1: cx + ext, y0: cy - ext, y1: cy + ext,
    p1: rng.uniform(0, TAU), p2: rng.uniform(0, TAU),
    tex, freq: rng.uniform(flo, fhi), phase: rng.uniform(0, TAU), lx: Math.cos(la), ly: Math.sin(la), salt: rng.seed32() | 0,
    c1: hsv(hue, sat, val), c2: hsv(hue + rng.uniform(-0.05, 0.05), sat * rng.uniform(0.5, 1), val * rng.uniform(0.35, 0.65)),
  }
}

/** Draws image `index` of the dataset. */
export function renderSynthImage(seed: number, index: number, size: number, classes: number,
  hues: HuePolicy = { hueSpread: SYNTH_DEFAULTS.hueSpread, anyHue: SYNTH_DEFAULTS.anyHue }): Rendered {
  const rng = Rng.keyed(seed, STREAM.synthImage, index)
  const nFg = classes - 1
  const bg = makeBackground(rng, size)
  // 1..4 objects, more often 3 or 4 than 1 (background would otherwise take two thirds of the pixels).
  const pick = rng.float()
  const count = pick < 0.15 ? 1 : pick < 0.4 ? 2 : pick < 0.7 ? 3 : 4
  const objs: Obj[] = []
  for (let i = 0; i < count; i++) objs.push(makeObject(rng, 1 + rng.below(nFg), nFg, size, hues))
  const nObj = objs.length

  // Top instance at a point (-1: background).
  const top = (x: number, y: number): number => {
    for (let i = nObj - 1; i >= 0; i--) {
      const o = objs[i]!
      if (x < o.x0 || x > o.x1 || y < o.y0 || y > o.y1) continue
      const dx = x - o.cx, dy = y - o.cy
      const u = (dx * o.cos + dy * o.sin) * o.ix, v = (dy * o.cos - dx * o.sin) * o.iy
      if (inside(o.cls - 1, u, v, o.p1, o.p2)) return i
    }
    return -1
  }
  const colour = (i: number, x: number, y: number, acc: Float64Array) => {
    let c1: Rgb, c2: Rgb, t: number
    if (i < 0) {
      c1 = bg.c1; c2 = bg.c2; t = bgMix(bg, x, y, size)
    } else {
      const o = objs[i]!
      const dx = x - o.cx, dy = y - o.cy
      c1 = o.c1; c2 = o.c2; t = texMix(o, (dx * o.cos + dy * o.sin) * o.ix, (dy * o.cos - dx * o.sin) * o.iy, x, y)
    }
    acc[0]! += c1[0] + (c2[0] - c1[0]) * t
    acc[1]! += c1[1] + (c2[1] - c1[1]) * t
    acc[2]! += c1[2] + (c2[2] - c1[2]) * t
  }

  const rgb = new Uint8Array(size * size * 3)
  const label = new Uint8Array(size * size)
  const acc = new Float64Array(3)
  const D = 0.7
  const h = size / 2
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      const x = px + 0.5, y = py + 0.5
      const centre = top(x, y)
      const edge = top(x - D, y) !== centre || top(x + D, y) !== centre || top(x, y - D) !== centre || top(x, y + D) !== centre
      const p = py * size + px
      label[p] = edge ? 255 : centre < 0 ? 0 : objs[centre]!.cls
      acc.fill(0)
      if (edge) { // anti-aliased: 2x2 samples
        for (let k = 0; k < 4; k++) {
          const sx = x + (k & 1 ? 0.25 : -0.25), sy = y + (k & 2 ? 0.25 : -0.25)
          colour(top(sx, sy), sx, sy, acc)
        }
        acc[0]! /= 4; acc[1]! /= 4; acc[2]! /= 4
      } else {
        colour(centre, x, y, acc)
      }
      const light = 1 + bg.light * (((x - h) * bg.lcos + (y - h) * bg.lsin) / size)
      for (let c = 0; c < 3; c++) {
        const val = acc[c]! * light + bg.noise * rng.normal()
        rgb[p * 3 + c] = val <= 0 ? 0 : val >= 255 ? 255 : Math.round(val)
      }
    }
  }
  return { rgb, label }
}

// ---------------------------------------------------------------------------------------------
// The dataset.

export function synthId(index: number): string {
  return `synth_${String(index).padStart(6, '0')}`
}

/**
 * Writes a synthetic dataset in the VOC layout (see the top of this file) and returns what it wrote.
 * The dataset is built in a sibling temporary directory and moved into place at the end, replacing
 * an earlier generated dataset at `out`; a non-empty `out` that is not one is refused.
 */
export async function generateSynthetic(opts: SynthOptions): Promise<SynthSummary> {
  const o = checkSynthOptions(opts)
  const classes = SYNTH_CLASS_NAMES.slice(0, o.classes)
  const splitDir = join('splits', String(o.labeled), String(o.seed))
  const s = await writeGenerated({
    out: o.out, generator: 'prcl-synth', version: SYNTH_VERSION,
    options: Object.fromEntries(Object.keys(SYNTH_DEFAULTS).map((k) => [k, o[k as keyof typeof SYNTH_DEFAULTS]])),
    classes, size: o.size, train: o.images, val: o.val, quality: o.quality, id: synthId,
    render: (i) => renderSynthImage(o.seed, i, o.size, o.classes, o),
    splits: (present, train) => {
      const chosen = new Set(chooseLabeled(present, [o.labeled], classes, o.seed, 'synth')[0])
      return [{ dir: splitDir, labeled: train.filter((_, i) => chosen.has(i)), unlabeled: train.filter((_, i) => !chosen.has(i)) }]
    },
  })
  const split = s.splits[0]!
  return { out: s.out, ids: s.ids, labeled: split.labeled, unlabeled: split.unlabeled, classes: s.classes, splitDir: split.dir, files: s.files, sha256: s.sha256 }
}
