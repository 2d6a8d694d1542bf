// Cityscapes resolution on fake trees: official and PRCL layouts, labelIds and labelTrainIds,
// bare stems, UniMatch pairs, image paths; the test-list check.
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { cityscapesDataset, LABEL_ID_TO_TRAIN_ID, type CityscapesOptions } from '../../ts/data/cityscapes.ts'
import { openDataset } from '../../ts/data/index.ts'
import { parseSplitText } from '../../ts/data/splits.ts'
import { makeTree, tempDir } from './tree.ts'

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })
function tree(files: string[]): string {
  const d = tempDir('city')
  dirs.push(d)
  return makeTree(d, files)
}

const A = 'aachen_000000_000019', F = 'frankfurt_000001_062250'
const images = [`leftImg8bit/train/aachen/${A}_leftImg8bit.png`, `leftImg8bit/val/frankfurt/${F}_leftImg8bit.png`]
const labels = (dir: string, kind: string) => [`${dir}train/aachen/${A}_gtFine_${kind}.png`, `${dir}val/frankfurt/${F}_gtFine_${kind}.png`]
const bare = parseSplitText(`${A}_leftImg8bit\n${F}_leftImg8bit\n`, 'stems.txt')
const open = (root: string, opts?: CityscapesOptions) => cityscapesDataset(root, opts)

describe('Cityscapes dataset', () => {
  it('maps labelIds to train ids as in prcl-method.md §12.3', () => {
    const lut = LABEL_ID_TO_TRAIN_ID
    expect(lut).toHaveLength(256)
    const table: [number, number][] = [[7, 0], [8, 1], [11, 2], [12, 3], [13, 4], [17, 5], [19, 6], [20, 7], [21, 8], [22, 9],
      [23, 10], [24, 11], [25, 12], [26, 13], [27, 14], [28, 15], [31, 16], [32, 17], [33, 18]]
    for (const [id, train] of table) expect(lut[id], `labelId ${id}`).toBe(train)
    for (const id of [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 200, 255]) expect(lut[id], `labelId ${id}`).toBe(255)
  })

  it('resolves bare stems in the official layout with labelIds, finding train or val', () => {
    const root = tree([...images, ...labels('gtFine/', 'labelIds')])
    const ds = openDataset('cityscapes', root)
    expect(ds.numClasses).toBe(19)
    expect(ds.classNames[0]).toBe('road')
    expect(ds.classNames[18]).toBe('bicycle')
    expect(ds.labelLut).toEqual([...LABEL_ID_TO_TRAIN_ID])
    expect(ds.resolve(bare, { needLabels: true })).toEqual([
      { id: `${A}_leftImg8bit`, image: join(root, images[0]!), label: join(root, `gtFine/train/aachen/${A}_gtFine_labelIds.png`) },
      { id: `${F}_leftImg8bit`, image: join(root, images[1]!), label: join(root, `gtFine/val/frankfurt/${F}_gtFine_labelIds.png`) },
    ])
  })

  it('prefers labelTrainIds when they exist (no LUT) and takes UniMatch pairs as written', () => {
    const root = tree([...images, ...labels('gtFine/', 'labelIds'), ...labels('gtFine/', 'labelTrainIds')])
    const ds = open(root)
    expect(ds.labelLut).toBeNull()
    expect(ds.resolve(bare, { needLabels: true })[1]!.label).toBe(join(root, `gtFine/val/frankfurt/${F}_gtFine_labelTrainIds.png`))
    const pairs = parseSplitText(`${images[0]} ${labels('gtFine/', 'labelTrainIds')[0]}`, 'u.txt')
    expect(ds.resolve(pairs, { needLabels: true })).toEqual([
      { id: `${A}_leftImg8bit`, image: join(root, images[0]!), label: join(root, `gtFine/train/aachen/${A}_gtFine_labelTrainIds.png`) }])
  })

  it('resolves the PRCL layout (label folders directly under the root)', () => {
    const root = tree([...images, ...labels('', 'labelIds')])
    const ds = open(root)
    expect(ds.labelLut).not.toBeNull()
    expect(ds.resolve(bare, { needLabels: true }).map((r) => r.label)).toEqual([
      join(root, `train/aachen/${A}_gtFine_labelIds.png`), join(root, `val/frankfurt/${F}_gtFine_labelIds.png`)])
  })

  it('derives labels for image-path lines from the path, and needs none for unlabeled lists', () => {
    const root = tree([...images, ...labels('gtFine/', 'labelIds')])
    const paths = parseSplitText(images.join('\n'), 'p.txt')
    expect(open(root).resolve(paths, { needLabels: true }).map((r) => r.label)).toEqual(labels('gtFine/', 'labelIds').map((l) => join(root, l)))
    const unl = tree(images) // no labels at all
    expect(open(unl).resolve(bare, { needLabels: false })).toEqual([
      { id: `${A}_leftImg8bit`, image: join(unl, images[0]!), label: null },
      { id: `${F}_leftImg8bit`, image: join(unl, images[1]!), label: null },
    ])
  })

  it('uses opts.subset for bare stems and reports what is missing', () => {
    const root = tree([...images, ...labels('gtFine/', 'labelIds')])
    expect(() => open(root).resolve(bare, { needLabels: false, subset: 'val', splitFile: 'stems.txt' }))
      .toThrow(`1 of 2 images listed in stems.txt are missing under ${root}: leftImg8bit/val/aachen/${A}_leftImg8bit.png (line 1)`)
    const gone = parseSplitText(`${A}_leftImg8bit\nbochum_000000_000313_leftImg8bit`, 'g.txt')
    expect(() => open(root).resolve(gone, { needLabels: true, splitFile: 'g.txt' }))
      .toThrow(/1 of 2 images listed in g\.txt .*bochum.*; 1 of 2 labels .*gtFine\/train\/bochum\/bochum_000000_000313_gtFine_labelIds\.png \(line 2\) \(bare stems are looked for under leftImg8bit\/train\/ and leftImg8bit\/val\/\)/)
  })

  it('refuses a pair mask of the other label kind', () => {
    const root = tree([...images, ...labels('gtFine/', 'labelIds'), `gtFine/train/aachen/${A}_gtFine_labelTrainIds.png`])
    const ds = open(root, { labels: 'labelIds' })
    const pairs = parseSplitText(`${images[0]} gtFine/train/aachen/${A}_gtFine_labelTrainIds.png`, 'u.txt')
    expect(() => ds.resolve(pairs, { needLabels: true, splitFile: 'u.txt' }))
      .toThrow(/u\.txt:1: mask .*labelTrainIds\.png holds labelTrainIds, but this Cityscapes dataset reads labelIds; open it with \{ labels: 'labelTrainIds' \}/)
  })

  it('refuses a bare id that is not a Cityscapes stem', () => {
    const root = tree(images)
    expect(() => open(root).resolve(parseSplitText(`${A}_leftImg8bit\n2011_000068`, 'v.txt'), { needLabels: false, splitFile: 'v.txt' }))
      .toThrow("v.txt:2: '2011_000068' is not a Cityscapes image stem; expected <city>_<seq>_<frame>_leftImg8bit")
  })

  it('explains test-city images in a labeled list (PRCL valid_filename.txt)', () => {
    const root = tree(images)
    const test = parseSplitText('munich_000013_000019_leftImg8bit\nberlin_000000_000019_leftImg8bit', 'valid_filename.txt')
    expect(() => open(root).resolve(test, { needLabels: true, subset: 'val', splitFile: 'valid_filename.txt' }))
      .toThrow(/valid_filename\.txt lists 2 images from Cityscapes test cities \(munich 1, berlin 1\): it is the official test list.*Q-eval-5/)
  })
})
