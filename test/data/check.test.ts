// The data pre-flight: every planted bad file found in one pass, with counts and names; the
// findings as the skip list; JPEG and PNG structure checks; the trailing blank line of a split.
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../ts/config/load.ts'
import { checkSample, checkSamples, jpegStructure, pngStructure, type FindingKind } from '../../ts/data/check.ts'
import { checkDataConfig, DataCheckError, loadRunData } from '../../ts/experiment/data.ts'
import { pngFromScanlines } from './png-fixtures.ts'
import { jpeg, label, PLANTED, plantedDataset, plantedSets, H, W } from './planted.ts'
import { tempDir } from './tree.ts'

let root: string
beforeAll(() => { root = plantedDataset(tempDir('planted')) })
afterAll(() => rmSync(root, { recursive: true, force: true }))

const config = (...extra: string[]) => loadConfig('synthetic-demo', [...plantedSets(root), ...extra])
const kinds = (fs: Array<{ kind: FindingKind }>) => fs.map((f) => f.kind).sort()

describe('check-data over a planted dataset', () => {
  const expected = {
    [`${PLANTED.truncated}.jpg`]: 'undecodable',
    [`${PLANTED.rgbLabel}.png`]: 'label-mode',
    [`${PLANTED.sizeMismatch}.png`]: 'size-mismatch',
    [`${PLANTED.value50}.png`]: 'label-values',
    [`${PLANTED.missingLabel}.png`]: 'missing',
    [`${PLANTED.missingImage}.jpg`]: 'missing',
    [`${PLANTED.notImage}.jpg`]: 'not-image',
    [`${PLANTED.valValue}.png`]: 'label-values',
  }

  it.each([['full', 0], ['full', 2], ['fast', 2]] as const)('finds every planted problem in one pass (%s, %d threads)', async (level, threads) => {
    const r = await checkDataConfig(config(), { level, threads })
    const found = Object.fromEntries(r.report.findings.map((f) => [f.file.split('/').pop()!, f.kind]))
    expect(found).toEqual(expected)
    expect(r.report.errors).toBe(8)
    expect(r.report.counts).toEqual({ labeled: 8, unlabeled: 5, val: 4 })
    expect(r.report.bad).toEqual({ labeled: [3, 4, 5, 6, 7], unlabeled: [3, 4], val: [3] })
    const f50 = r.report.findings.find((f) => f.id === PLANTED.value50)!
    expect(f50).toMatchObject({ list: 'labeled', line: 7, role: 'label' })
    expect(f50.message).toMatch(/holds the value 50 in 12 pixels; expected class indices 0\.\.20 or 255 \(ignore\)/)
    expect(r.report.findings.find((f) => f.id === PLANTED.valValue)!.message).toMatch(/the value 30 in 5 pixels/)
    expect(r.report.findings.find((f) => f.id === PLANTED.truncated)!.message).toMatch(/JPEG is truncated/)
    expect(r.report.findings.find((f) => f.id === PLANTED.rgbLabel)!.message).toMatch(/label PNG is RGB, 8-bit; a label must be an 8-bit palette or greyscale PNG/)
    expect(r.report.findings.find((f) => f.id === PLANTED.sizeMismatch)!.message).toMatch(/is 32x24, its image .* is 40x30/)
    // The text: totals, then each kind with its count and files (relative to the root, with list and line).
    expect(r.text).toMatch(/^checked 17 samples under .* \(labeled 8, unlabeled 5, val 4; \w+ check\): 8 problems in 8 samples/)
    expect(r.text).toMatch(/^ {2}2 files do not exist:$/m)
    expect(r.text).toContain(`JPEGImages/${PLANTED.missingImage}.jpg (unlabeled line 4): does not exist`)
    expect(r.text).toMatch(/^ {2}2 labels hold values outside the classes and the ignore index:$/m)
    expect(r.text).toContain(`SegmentationClass/${PLANTED.valValue}.png (val line 4): holds the value 30`)
    expect(r.text).toMatch(/^ {2}1 image does not decode \(truncated or corrupt\):$/m)
  }, 60_000)

  it('at train start: one error listing them all, or with skip_bad_samples the skip list with reasons', async () => {
    const err = await loadRunData(config(), { check: 'fast', threads: 0 }).catch((e) => e)
    expect(err).toBeInstanceOf(DataCheckError)
    expect(err.message).toMatch(/8 problems in 8 samples/)
    expect(err.message).toMatch(/data\.skip_bad_samples=true/)
    const data = await loadRunData(config('data.skip_bad_samples=true'), { check: 'fast', threads: 0 })
    expect(data.labeled.map((r) => r.id)).toEqual(['l_a', 'l_b', 'l_c'])
    expect(data.unlabeled.map((r) => r.id)).toEqual(['u_a', 'u_b', 'u_c'])
    expect(data.val.map((r) => r.id)).toEqual(['v_a', 'v_b', 'v_c'])
    expect(data.sizes.labeled).toEqual([{ width: W, height: H }, { width: W, height: H }, { width: W, height: H }])
    expect(data.skipped).toHaveLength(8)
    expect(data.skipped.find((s) => s.file.endsWith(`${PLANTED.truncated}.jpg`))!.reason).toMatch(/^labeled line 4: .* JPEG is truncated/)
  }, 60_000)

  it('without the check, skip_bad_samples still leaves out samples whose files are missing', async () => {
    await expect(loadRunData(config())).rejects.toThrow(/1 of 8 labels listed in .* are missing/)
    const data = await loadRunData(config('data.skip_bad_samples=true'))
    expect(data.skipped.map((s) => s.file.split('/').pop())).toEqual(expect.arrayContaining([`${PLANTED.missingLabel}.png`, `${PLANTED.missingImage}.jpg`, `${PLANTED.notImage}.jpg`]))
    expect(data.labeled.map((r) => r.id)).not.toContain(PLANTED.missingLabel)
  }, 60_000)
})

describe('file checks', () => {
  it('a JPEG cut anywhere is truncated; a whole one walks to EOI with its size', () => {
    const j = jpeg(48, 32)
    expect(jpegStructure(j)).toEqual({ width: 48, height: 32 })
    for (const cut of [3, 20, 200, Math.floor(j.length / 2), j.length - 1, j.length - 2]) {
      expect(() => jpegStructure(j.subarray(0, cut)), `cut at ${cut}`).toThrow(/JPEG is truncated/)
    }
    expect(() => jpegStructure(Buffer.from('GIF89a'))).toThrow(/not a JPEG/)
  })

  it('a PNG with a bad CRC, cut short, or whose data inflates to the wrong size is refused', () => {
    const good = label()
    expect(pngStructure(good, true)).toMatchObject({ width: W, height: H, colour: 3, depth: 8 })
    expect(() => pngStructure(good.subarray(0, good.length - 5), true)).toThrow(/PNG is truncated/)
    const flipped = Buffer.from(good)
    flipped[60] = flipped[60]! ^ 0xff // inside the palette's data
    expect(() => pngStructure(flipped, false)).toThrow(/bad CRC/)
    const short = pngFromScanlines({ width: 4, height: 4 }, new Uint8Array(3 * 5))
    expect(() => pngStructure(short, true)).toThrow(/has 15 bytes, its header needs 20/)
    // Adam7 interlaced, 4x4 greyscale 8-bit: passes of 1x1, 1x1, 2x1 and 2x2 and 4x2 pixels, each row with its filter byte: 23 bytes.
    const inter = (n: number) => pngFromScanlines({ width: 4, height: 4, interlace: 1 }, new Uint8Array(n))
    expect(pngStructure(inter(23), true)).toMatchObject({ interlace: 1 })
    expect(() => pngStructure(inter(24), true)).toThrow(/has 24 bytes, its header needs 23/)
  })

  it('label modes: 16-bit grey refused; a 4-bit palette noted, values unchecked', async () => {
    const dir = tempDir('modes')
    try {
      const grey16 = pngFromScanlines({ width: 2, height: 1, depth: 16 }, [0, 0, 1, 0, 2])
      const pal4 = pngFromScanlines({ width: 2, height: 1, depth: 4, colourType: 3, palette: true }, [0, 0x12])
      writeFileSync(join(dir, 'i.jpg'), jpeg(2, 1))
      writeFileSync(join(dir, 'g.png'), grey16)
      writeFileSync(join(dir, 'p.png'), pal4)
      const opts = { level: 'full' as const, numClasses: 21, labelLut: null }
      const g = await checkSample({ id: 'g', image: join(dir, 'i.jpg'), label: join(dir, 'g.png') }, opts)
      expect(kinds(g.findings)).toEqual(['label-mode'])
      expect(g.findings[0]!.message).toMatch(/greyscale, 16-bit/)
      const p = await checkSample({ id: 'p', image: join(dir, 'i.jpg'), label: join(dir, 'p.png') }, opts)
      expect(kinds(p.findings)).toEqual(['label-unchecked'])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('values go through the label LUT: a stored value mapped to ignore is fine, one mapped outside is not', async () => {
    const dir = tempDir('lut')
    try {
      writeFileSync(join(dir, 'i.jpg'), jpeg(4, 2))
      writeFileSync(join(dir, 'l.png'), label(4, 2, { value: 50, pixels: 3 }))
      const ref = { id: 'x', image: join(dir, 'i.jpg'), label: join(dir, 'l.png') }
      const lut = Array.from({ length: 256 }, (_, v) => (v < 21 ? v : 255))
      expect((await checkSample(ref, { level: 'fast', numClasses: 21, labelLut: lut })).findings).toEqual([])
      lut[50] = 40
      const r = await checkSample(ref, { level: 'fast', numClasses: 21, labelLut: lut })
      expect(r.findings[0]!.message).toMatch(/50 \(train id 40\) in 3 pixels; .* after the dataset's label mapping/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('threads and no threads give the same results, in list order', async () => {
    const refs = Array.from({ length: 40 }, (_, i) => ({ id: `s${i}`, image: join(root, 'JPEGImages', i % 5 === 0 ? `${PLANTED.truncated}.jpg` : 'l_a.jpg'), label: null }))
    const a = await checkSamples(refs, { level: 'full', numClasses: 21, labelLut: null, threads: 0 })
    const b = await checkSamples(refs, { level: 'full', numClasses: 21, labelLut: null, threads: 3 })
    expect(b).toEqual(a)
    expect(a.filter((r) => r.findings.length).length).toBe(8)
  }, 60_000)
})

describe('checking some lists only', () => {
  it('lists: [val] checks the val labels and reads the rest as without a check', async () => {
    const err = await loadRunData(config('data.skip_bad_samples=true'), { check: 'fast', lists: ['val'], threads: 0 })
    expect(err.val.map((r) => r.id)).toEqual(['v_a', 'v_b', 'v_c'])
    expect(err.skipped.find((s) => s.file.endsWith(`${PLANTED.valValue}.png`))!.reason).toMatch(/^val line 4: .* holds the value 30/)
    // Unchecked training lists: missing and unreadable files skipped, the truncated JPEG (header intact) kept.
    expect(err.labeled.map((r) => r.id)).toContain(PLANTED.truncated)
    expect(err.unlabeled.map((r) => r.id)).toEqual(['u_a', 'u_b', 'u_c'])
    await expect(loadRunData(config(), { check: 'fast', lists: ['val'], threads: 0 })).rejects.toThrow(/1 of 8 labels listed in .* are missing/)
  })
})
