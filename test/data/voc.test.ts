// VOC resolution on fake trees: bare ids, UniMatch pairs, image paths; missing files reported.
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { openDataset } from '../../ts/data/index.ts'
import { parseSplitText } from '../../ts/data/splits.ts'
import { vocDataset, VOC_CLASSES } from '../../ts/data/voc.ts'
import { makeTree, tempDir } from './tree.ts'

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })
function voc(files: string[]): string {
  const d = tempDir('voc')
  dirs.push(d)
  return makeTree(d, files)
}

describe('VOC dataset', () => {
  it('has the 21 VOC classes and no label LUT', () => {
    const ds = openDataset('voc', voc(['JPEGImages/a.jpg']))
    expect(ds.numClasses).toBe(21)
    expect(ds.classNames[0]).toBe('background')
    expect(ds.classNames[15]).toBe('person')
    expect(ds.classNames[20]).toBe('tvmonitor')
    expect(ds.classNames).toEqual(VOC_CLASSES)
    expect(ds.labelLut).toBeNull()
    expect(ds.name).toBe('voc')
  })

  it('resolves bare ids to JPEGImages and SegmentationClassAug', () => {
    const root = voc(['JPEGImages/a.jpg', 'JPEGImages/b.jpg', 'SegmentationClassAug/a.png', 'SegmentationClassAug/b.png', 'SegmentationClass/a.png'])
    const refs = vocDataset(root).resolve(parseSplitText('a\nb', 's.txt'), { needLabels: true })
    expect(refs).toEqual([
      { id: 'a', image: join(root, 'JPEGImages/a.jpg'), label: join(root, 'SegmentationClassAug/a.png') },
      { id: 'b', image: join(root, 'JPEGImages/b.jpg'), label: join(root, 'SegmentationClassAug/b.png') },
    ])
  })

  it('falls back to SegmentationClass when there is no SegmentationClassAug', () => {
    const root = voc(['JPEGImages/a.jpg', 'SegmentationClass/a.png'])
    expect(vocDataset(root).resolve(parseSplitText('a', 's'), { needLabels: true })[0]!.label).toBe(join(root, 'SegmentationClass/a.png'))
  })

  it('uses the paths of UniMatch pairs, and ignores their masks for unlabeled lists', () => {
    const root = voc(['JPEGImages/a.jpg', 'JPEGImages/b.jpg', 'SegmentationClass/a.png'])
    const entries = parseSplitText('JPEGImages/a.jpg SegmentationClass/a.png\nJPEGImages/b.jpg SegmentationClass/b.png\n', 'u.txt')
    const ds = vocDataset(root)
    expect(ds.resolve(entries.slice(0, 1), { needLabels: true })).toEqual([
      { id: 'a', image: join(root, 'JPEGImages/a.jpg'), label: join(root, 'SegmentationClass/a.png') }])
    expect(ds.resolve(entries, { needLabels: false }).map((r) => r.label)).toEqual([null, null])
    expect(() => ds.resolve(entries, { needLabels: true, splitFile: 'u.txt' }))
      .toThrow(`1 of 2 labels listed in u.txt are missing under ${root}: SegmentationClass/b.png (line 2)`)
  })

  it('takes unlabeled image paths without masks', () => {
    const root = voc(['JPEGImages/a.jpg', 'extra/z.jpg'])
    const refs = vocDataset(root).resolve(parseSplitText('JPEGImages/a.jpg\nextra/z.jpg\n', 'p'), { needLabels: false })
    expect(refs).toEqual([
      { id: 'a', image: join(root, 'JPEGImages/a.jpg'), label: null },
      { id: 'z', image: join(root, 'extra/z.jpg'), label: null },
    ])
  })

  it('reports missing images with the count and the first few, naming the split and root', () => {
    const root = voc(['JPEGImages/a.jpg', 'SegmentationClassAug/a.png'])
    const entries = parseSplitText(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].join('\n'), 'l.txt')
    const ds = vocDataset(root)
    expect(() => ds.resolve(entries, { needLabels: false, splitFile: 'l.txt' }))
      .toThrow(`7 of 8 images listed in l.txt are missing under ${root}: JPEGImages/b.jpg (line 2), JPEGImages/c.jpg (line 3), ` +
        'JPEGImages/d.jpg (line 4), JPEGImages/e.jpg (line 5), JPEGImages/f.jpg (line 6), and 2 more')
    expect(() => ds.resolve(entries.slice(0, 2), { needLabels: true }))
      .toThrow(/1 of 2 images listed in the split are missing .*; 1 of 2 labels listed in the split are missing under .*: SegmentationClassAug\/b\.png \(line 2\)$/)
  })

  it('says when there is no label folder at all', () => {
    const root = voc(['JPEGImages/a.jpg'])
    expect(() => vocDataset(root).resolve(parseSplitText('a', 's'), { needLabels: true }))
      .toThrow(/1 of 1 labels .*SegmentationClass\/a\.png \(line 1\) \(neither SegmentationClassAug\/ nor SegmentationClass\/ exists under the root\)/)
  })

  it('refuses a missing root', () => {
    expect(() => vocDataset('/nonexistent/voc')).toThrow('VOC dataset root /nonexistent/voc does not exist or is not a directory')
  })
})
