// The synthetic VOC-layout dataset: real files in a temporary directory, read back with independent
// decoders (jpeg-js for the images, a small PNG reader here for the labels).
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inflateSync } from 'node:zlib'
import { decode as decodeJpeg } from 'jpeg-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeRgbJpeg } from '../../ts/data/jpeg.ts'
import { vocPalette } from '../../ts/data/png.ts'
import { SYNTH_CLASS_NAMES, checkSynthOptions, generateSynthetic, type SynthOptions, type SynthSummary } from '../../ts/data/synth.ts'

const tmp = mkdtempSync(join(tmpdir(), 'prcl-synth-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

const OPTS = { seed: 7, images: 60, val: 16, size: 48, classes: 5, labeled: 8 } as const

/** Reads an 8-bit palette PNG: size, palette and indices (unfiltered or Sub/Up/Average/Paeth rows). */
function readPalettePng(bytes: Buffer): { width: number; height: number; palette: Buffer; indices: Uint8Array } {
  expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  let off = 8, width = 0, height = 0, palette = Buffer.alloc(0)
  const idat: Buffer[] = []
  while (off < bytes.length) {
    const len = bytes.readUInt32BE(off)
    const type = bytes.toString('ascii', off + 4, off + 8)
    const data = bytes.subarray(off + 8, off + 8 + len)
    if (type === 'IHDR') {
      width = data.readUInt32BE(0)
      height = data.readUInt32BE(4)
      expect(data[8]).toBe(8) // bit depth
      expect(data[9]).toBe(3) // palette colour type
      expect(data[12]).toBe(0) // not interlaced
    } else if (type === 'PLTE') palette = Buffer.from(data)
    else if (type === 'IDAT') idat.push(Buffer.from(data))
    off += 12 + len
  }
  const raw = inflateSync(Buffer.concat(idat))
  expect(raw.length).toBe(height * (width + 1))
  const out = new Uint8Array(width * height)
  for (let y = 0; y < height; y++) {
    const f = raw[y * (width + 1)]!
    for (let x = 0; x < width; x++) {
      const r = raw[y * (width + 1) + 1 + x]!
      const a = x > 0 ? out[y * width + x - 1]! : 0
      const b = y > 0 ? out[(y - 1) * width + x]! : 0
      const c = x > 0 && y > 0 ? out[(y - 1) * width + x - 1]! : 0
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c)
      const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >> 1 : pa <= pb && pa <= pc ? a : pb <= pc ? b : c
      out[y * width + x] = (r + pred) & 0xff
    }
  }
  return { width, height, palette, indices: out }
}

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]).sort()
}

/** The content hash as synth.json defines it, recomputed from the files on disk. */
function hashDir(dir: string): string {
  const h = createHash('sha256')
  for (const p of listFiles(dir).filter((p) => p !== 'synth.json')) {
    h.update(`${p}\0${createHash('sha256').update(readFileSync(join(dir, p))).digest('hex')}\n`)
  }
  return h.digest('hex')
}

const labelOf = (dir: string, id: string) => readPalettePng(readFileSync(join(dir, 'SegmentationClass', `${id}.png`))).indices

describe('generateSynthetic', () => {
  let s: SynthSummary
  const dir = join(tmp, 'a')
  beforeAll(async () => {
    s = await generateSynthetic({ out: dir, ...OPTS })
  })

  it('writes the VOC layout with the expected files and counts', () => {
    const all = listFiles(dir)
    const n = OPTS.images + OPTS.val
    expect(all.filter((p) => p.startsWith('JPEGImages/'))).toHaveLength(n)
    expect(all.filter((p) => p.startsWith('SegmentationClass/'))).toHaveLength(n)
    expect(all.filter((p) => !p.startsWith('JPEGImages/') && !p.startsWith('SegmentationClass/'))).toEqual([
      'classes.txt', 'splits/8/7/labeled_filename.txt', 'splits/8/7/unlabeled_filename.txt', 'splits/8/7/valid_filename.txt', 'synth.json',
    ])
    expect(s.files).toBe(all.length - 1) // all but synth.json
    expect(s.out).toBe(dir)
    expect(s.splitDir).toBe(join(dir, 'splits', '8', '7'))
    expect(s.ids.train).toHaveLength(OPTS.images)
    expect(s.ids.val).toHaveLength(OPTS.val)
    expect(s.ids.train[0]).toBe('synth_000000')
    expect(s.ids.val[0]).toBe(`synth_${String(OPTS.images).padStart(6, '0')}`)
    for (const id of [...s.ids.train, ...s.ids.val]) {
      expect(id).toMatch(/^synth_\d{6}$/)
      expect(all).toContain(`JPEGImages/${id}.jpg`)
      expect(all).toContain(`SegmentationClass/${id}.png`)
    }
    expect(s.classes).toEqual(['background', 'disc', 'square', 'triangle', 'ring'])
    expect(readFileSync(join(dir, 'classes.txt'), 'utf8')).toBe('background\ndisc\nsquare\ntriangle\nring')
  })

  it('writes JPEGs that decode to the right size and RGB content', () => {
    for (const id of [...s.ids.train, ...s.ids.val]) {
      const bytes = readFileSync(join(dir, 'JPEGImages', `${id}.jpg`))
      expect([bytes[0], bytes[1]]).toEqual([0xff, 0xd8])
      expect([bytes.at(-2), bytes.at(-1)]).toEqual([0xff, 0xd9])
      const img = decodeJpeg(bytes, { useTArray: true, formatAsRGBA: false })
      expect([img.width, img.height]).toEqual([OPTS.size, OPTS.size])
      expect(img.data.length).toBe(OPTS.size * OPTS.size * 3)
      // Not flat: every image has structure.
      let min = 255, max = 0
      for (const v of img.data) { min = Math.min(min, v); max = Math.max(max, v) }
      expect(max - min).toBeGreaterThan(40)
    }
  })

  it('writes palette label PNGs of the right size with only class indices and 255', () => {
    const palette = Buffer.from(vocPalette())
    let ignore = 0, total = 0
    for (const id of [...s.ids.train, ...s.ids.val]) {
      const png = readPalettePng(readFileSync(join(dir, 'SegmentationClass', `${id}.png`)))
      expect([png.width, png.height]).toEqual([OPTS.size, OPTS.size])
      expect(png.palette.equals(palette)).toBe(true)
      const bad = new Set<number>()
      for (const v of png.indices) {
        if (v === 255) ignore++
        else if (v >= OPTS.classes) bad.add(v)
      }
      expect([...bad], id).toEqual([])
      total += png.indices.length
    }
    // The ignore band is a thin outline: present, but a small share of the pixels.
    expect(ignore / total).toBeGreaterThan(0.01)
    expect(ignore / total).toBeLessThan(0.15)
  })

  it('ignore pixels lie on outlines: every 255 pixel has a labeled class on both sides within 2 px', () => {
    const n = OPTS.size
    const isolated: string[] = []
    for (const id of s.ids.train.slice(0, 10)) {
      const l = labelOf(dir, id)
      for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
        if (l[y * n + x] !== 255) continue
        // An isolated or thick band would have no labeled pixel within 2 px.
        let near = false
        for (let dy = -2; dy <= 2 && !near; dy++) for (let dx = -2; dx <= 2; dx++) {
          const yy = y + dy, xx = x + dx
          if (yy >= 0 && yy < n && xx >= 0 && xx < n && l[yy * n + xx] !== 255) { near = true; break }
        }
        if (!near) isolated.push(`${id} (${x}, ${y})`)
      }
    }
    expect(isolated).toEqual([])
  })

  it('writes the PRCL split files: bare ids, no trailing newline, a partition of train and val', () => {
    const read = (f: string) => readFileSync(join(s.splitDir, f), 'utf8')
    for (const f of ['labeled_filename.txt', 'unlabeled_filename.txt', 'valid_filename.txt']) {
      const text = read(f)
      expect(text.endsWith('\n')).toBe(false)
      expect(text).not.toMatch(/\r|\.jpg|\.png|\s\s/)
    }
    const labeled = read('labeled_filename.txt').split('\n')
    const unlabeled = read('unlabeled_filename.txt').split('\n')
    const valid = read('valid_filename.txt').split('\n')
    expect(labeled).toEqual(s.labeled)
    expect(unlabeled).toEqual(s.unlabeled)
    expect(valid).toEqual(s.ids.val)
    expect(labeled).toHaveLength(OPTS.labeled)
    expect(unlabeled).toHaveLength(OPTS.images - OPTS.labeled)
    expect(valid).toHaveLength(OPTS.val)
    expect(new Set([...labeled, ...unlabeled]).size).toBe(OPTS.images)
    expect([...labeled, ...unlabeled].sort()).toEqual([...s.ids.train].sort())
    for (const id of valid) expect(s.ids.train).not.toContain(id)
  })

  it('puts every class in the labeled split', () => {
    const seen = new Set<number>()
    for (const id of s.labeled) for (const v of labelOf(dir, id)) if (v !== 255) seen.add(v)
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4])
  })

  it('records the options, counts and a content hash that matches the files', () => {
    const m = JSON.parse(readFileSync(join(dir, 'synth.json'), 'utf8'))
    expect(m.generator).toBe('prcl-synth')
    expect(m.options).toEqual({ ...OPTS, quality: 90, hueSpread: 0.65, anyHue: 0.1 })
    expect(m.classes).toEqual(s.classes)
    expect(m.splitDir).toBe('splits/8/7')
    expect(m.counts).toEqual({ train: 60, val: 16, labeled: 8, unlabeled: 52 })
    expect(m.files).toBe(s.files)
    expect(m.sha256).toMatch(/^[0-9a-f]{64}$/)
    expect(m.sha256).toBe(s.sha256)
    expect(hashDir(dir)).toBe(s.sha256)
    // Golden: these bytes, from the keyed streams of ts/rng.ts (Rng.keyed(seed, STREAM.synthImage, i),
    // Rng.keyed(seed, STREAM.synthSplit)). A change here changes every synthetic dataset.
    expect(s.sha256).toBe('4ac29809a8bfff8d08ba2b024fe0d13c8e9f09923c2861f1a552d59dca58358b')
    expect(s.labeled).toEqual(['synth_000000', 'synth_000009', 'synth_000013', 'synth_000020', 'synth_000021', 'synth_000024', 'synth_000036', 'synth_000042'])
  })

  it('gives every class, background included, a reasonable share of the pixels', () => {
    const counts = new Array<number>(OPTS.classes).fill(0)
    let labeled = 0
    for (const id of [...s.ids.train, ...s.ids.val]) {
      for (const v of labelOf(dir, id)) if (v !== 255) { counts[v]!++; labeled++ }
    }
    const frac = counts.map((c) => c / labeled)
    for (const f of frac) {
      expect(f).toBeGreaterThan(0.03)
      expect(f).toBeLessThan(0.6)
    }
    // No foreground class dominates the others.
    const fg = frac.slice(1)
    expect(Math.max(...fg) / Math.min(...fg)).toBeLessThan(2.5)
  })

  /** mIoU of a per-pixel colour classifier: colour histogram (16 levels a channel) -> most
   *  frequent class, fitted on the training images' own labels, scored on the validation images. */
  function colourClassifier(d: string, ids: { train: string[]; val: string[] }) {
    const K = OPTS.classes
    const bins = (rgb: Uint8Array, i: number) => ((rgb[i * 3]! >> 4) << 8) | ((rgb[i * 3 + 1]! >> 4) << 4) | (rgb[i * 3 + 2]! >> 4)
    const hist = new Float64Array(4096 * K)
    const load = (id: string) => ({
      rgb: decodeJpeg(readFileSync(join(d, 'JPEGImages', `${id}.jpg`)), { useTArray: true, formatAsRGBA: false }).data,
      label: labelOf(d, id),
    })
    for (const id of ids.train) {
      const { rgb, label } = load(id)
      label.forEach((l, i) => { if (l !== 255) hist[bins(rgb, i) * K + l]!++ })
    }
    const inter = new Float64Array(K), union = new Float64Array(K)
    for (const id of ids.val) {
      const { rgb, label } = load(id)
      label.forEach((l, i) => {
        if (l === 255) return
        const b = bins(rgb, i)
        let pred = 0
        for (let c = 1; c < K; c++) if (hist[b * K + c]! > hist[b * K + pred]!) pred = c
        if (pred === l) inter[l]!++
        union[l]!++
        if (pred !== l) union[pred]!++
      })
    }
    const ious = [...inter].map((v, c) => v / Math.max(1, union[c]!))
    return { ious, miou: ious.reduce((a, b) => a + b, 0) / K }
  }

  it('is not solved by a per-pixel colour classifier', () => {
    // A shape-blind classifier stays far from a solution, even fitted on every training label.
    const { ious, miou } = colourClassifier(dir, s.ids)
    expect(miou).toBeLessThan(0.4)
    // Foreground classes in particular are mostly confused.
    for (const iou of ious.slice(1)) expect(iou).toBeLessThan(0.45)
  })

  it('lets colour say more about the class when hue windows are apart and no object takes any hue', async () => {
    const easy = await generateSynthetic({ out: join(tmp, 'easy'), ...OPTS, hueSpread: 0.3, anyHue: 0 })
    const base = colourClassifier(dir, s.ids)
    const apart = colourClassifier(easy.out, easy.ids)
    const fg = (r: { ious: number[] }) => r.ious.slice(1).reduce((a, b) => a + b, 0) / (r.ious.length - 1)
    expect(fg(apart)).toBeGreaterThan(fg(base) + 0.05)
    // Same shapes and places: only colours changed.
    expect(labelOf(easy.out, easy.ids.train[3]!)).toEqual(labelOf(dir, s.ids.train[3]!))
  })
})

describe('determinism', () => {
  it('gives byte-identical files for the same options, different files for another seed', async () => {
    const a = await generateSynthetic({ out: join(tmp, 'd1'), ...OPTS, images: 24, val: 6, labeled: 4 })
    const b = await generateSynthetic({ out: join(tmp, 'd2'), ...OPTS, images: 24, val: 6, labeled: 4 })
    const c = await generateSynthetic({ out: join(tmp, 'd3'), ...OPTS, images: 24, val: 6, labeled: 4, seed: 8 })
    expect(b.sha256).toBe(a.sha256)
    expect(a.sha256).toBe('ca82cad4f2e61b70e38a89db6d9dc63fda3b4cb5bbbd436cbed9137b8baee3f5') // golden, see above
    expect(a.labeled).toEqual(['synth_000003', 'synth_000016', 'synth_000020', 'synth_000023'])
    expect(hashDir(join(tmp, 'd2'))).toBe(a.sha256)
    for (const p of listFiles(join(tmp, 'd1'))) {
      expect(readFileSync(join(tmp, 'd2', p)).equals(readFileSync(join(tmp, 'd1', p)))).toBe(true)
    }
    expect(c.sha256).not.toBe(a.sha256)
    expect(readFileSync(join(tmp, 'd3', 'JPEGImages', 'synth_000000.jpg')).equals(readFileSync(join(tmp, 'd1', 'JPEGImages', 'synth_000000.jpg')))).toBe(false)
  })

  it('draws the same images whatever the labeled count, so splits of several sizes share them', async () => {
    const a = await generateSynthetic({ out: join(tmp, 'l1'), ...OPTS, images: 24, val: 6, labeled: 4 })
    const b = await generateSynthetic({ out: join(tmp, 'l2'), ...OPTS, images: 24, val: 6, labeled: 12 })
    for (const d of ['JPEGImages', 'SegmentationClass']) {
      for (const f of readdirSync(join(tmp, 'l1', d))) {
        expect(readFileSync(join(tmp, 'l2', d, f)).equals(readFileSync(join(tmp, 'l1', d, f)))).toBe(true)
      }
    }
    expect(b.labeled).toHaveLength(12)
    expect(a.labeled).toHaveLength(4)
  })

  it('encodes JPEGs exactly as jpeg-js\'s public encode() does (the reused encoder is only faster)', () => {
    for (const [w, h, q] of [[48, 48, 90], [17, 33, 50], [100, 7, 100], [64, 64, 1]] as const) {
      const rgb = new Uint8Array(w * h * 3).map((_, i) => ((i * 2654435761) >>> 24) ^ (i >> 5))
      expect(encodeRgbJpeg(w, h, rgb, q).equals(encodeRgbJpeg(w, h, rgb, q, { reuse: false }))).toBe(true)
    }
  })
})

describe('the default dataset', () => {
  it('covers every class in the labeled split and generates within a few seconds', async () => {
    const s = await generateSynthetic({ out: join(tmp, 'default') })
    expect(s.ids.train).toHaveLength(240)
    expect(s.ids.val).toHaveLength(60)
    expect(s.labeled).toHaveLength(16)
    expect(s.classes).toEqual(['background', 'disc', 'square', 'triangle', 'ring'])
    expect(s.splitDir).toBe(join(tmp, 'default', 'splits', '16', '0'))
    const seen = new Set<number>()
    for (const id of s.labeled) for (const v of labelOf(s.out, id)) if (v !== 255) seen.add(v)
    expect(seen.size).toBe(5)
  })

  it('covers all 21 classes with few labeled images', async () => {
    const s = await generateSynthetic({ out: join(tmp, 'c21'), images: 120, val: 4, size: 32, classes: 21, labeled: 8 })
    expect(s.classes).toEqual([...SYNTH_CLASS_NAMES])
    const seen = new Set<number>()
    for (const id of s.labeled) for (const v of labelOf(s.out, id)) if (v !== 255) seen.add(v)
    expect(seen.size).toBe(21)
  })
})

describe('options', () => {
  const bad: [Partial<SynthOptions> & Record<string, unknown>, RegExp][] = [
    [{ size: -1 }, /size must be an integer in 16\.\.4096.*got -1/],
    [{ size: 8 }, /size must be an integer in 16\.\.4096/],
    [{ size: 32.5 }, /size must be an integer/],
    [{ classes: 22 }, /classes must be an integer in 2\.\.21.*got 22/],
    [{ classes: 1 }, /classes must be an integer in 2\.\.21/],
    [{ images: 10, labeled: 11 }, /labeled must be an integer in 1\.\.10 \(at most images = 10\).*got 11/],
    [{ labeled: 0 }, /labeled must be an integer in 1\.\./],
    [{ classes: 21, labeled: 4 }, /labeled must be an integer in 5\.\.240 .*all 21 classes.*got 4/],
    [{ images: 0 }, /images must be an integer in 1\.\./],
    [{ val: -3 }, /val must be an integer in 0\.\./],
    [{ seed: -1 }, /seed must be an integer in 0\.\.4294967295/],
    [{ quality: 101 }, /quality must be an integer in 1\.\.100/],
    [{ seed: '3' as unknown as number }, /seed must be an integer.*got string "3"/],
    [{ imgs: 3 }, /unknown synth option imgs/],
    [{ hueSpread: -0.1 }, /hueSpread must be a number in 0\.\.2, got -0\.1/],
    [{ anyHue: 1.5 }, /anyHue must be a number in 0\.\.1, got 1\.5/],
    [{ anyHue: Number.NaN }, /anyHue must be a number in 0\.\.1, got NaN/],
  ]
  for (const [opts, re] of bad) {
    it(`rejects ${JSON.stringify(opts)}`, () => {
      expect(() => checkSynthOptions({ out: join(tmp, 'never'), ...opts })).toThrow(re)
    })
  }

  it('rejects a missing output directory', () => {
    expect(() => checkSynthOptions({ out: '' })).toThrow(/option out/)
  })

  it('fills in the defaults', () => {
    expect(checkSynthOptions({ out: 'x', seed: 3 })).toEqual({ out: 'x', seed: 3, images: 240, size: 64, classes: 5, labeled: 16, val: 60, quality: 90, hueSpread: 0.65, anyHue: 0.1 })
  })

  it('generateSynthetic rejects bad options before writing anything', async () => {
    await expect(generateSynthetic({ out: join(tmp, 'never'), classes: 30 })).rejects.toThrow(/classes/)
    expect(existsSync(join(tmp, 'never'))).toBe(false)
  })

  it('replaces an earlier synthetic dataset but refuses a directory holding anything else', async () => {
    const out = join(tmp, 'replace')
    await generateSynthetic({ out, ...OPTS, images: 12, val: 2, labeled: 2 })
    writeFileSync(join(out, 'JPEGImages', 'stale.jpg'), 'x')
    const s = await generateSynthetic({ out, ...OPTS, images: 10, val: 2, labeled: 2 })
    expect(readdirSync(join(out, 'JPEGImages'))).toHaveLength(12)
    expect(hashDir(out)).toBe(s.sha256)
    const other = join(tmp, 'other')
    mkdirSync(other)
    writeFileSync(join(other, 'notes.txt'), 'mine')
    await expect(generateSynthetic({ out: other, ...OPTS, images: 10, val: 2, labeled: 2 })).rejects.toThrow(/refusing/)
    expect(readdirSync(other)).toEqual(['notes.txt'])
    expect(readdirSync(tmp).filter((f) => f.includes('.partial-'))).toEqual([])
  })
})
