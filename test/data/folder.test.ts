// The plain folder dataset: images/, masks/, classes.txt.
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { folderDataset } from '../../ts/data/folder.ts'
import { openDataset } from '../../ts/data/index.ts'
import { parseSplitText } from '../../ts/data/splits.ts'
import { makeTree, tempDir } from './tree.ts'

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })
function tree(files: Record<string, string>): string {
  const d = tempDir('folder')
  dirs.push(d)
  return makeTree(d, files)
}
const CLASSES = 'background\ncrack\nrust\n'

describe('folder dataset', () => {
  it('reads class names and resolves bare ids to .jpg or .png images and masks', () => {
    const root = tree({ 'classes.txt': CLASSES, 'images/a.jpg': '', 'images/b.png': '', 'images/notes.txt': '', 'masks/a.png': '', 'masks/b.png': '' })
    const ds = openDataset('folder', root)
    expect(ds.numClasses).toBe(3)
    expect(ds.classNames).toEqual(['background', 'crack', 'rust'])
    expect(ds.labelLut).toBeNull()
    expect(ds.resolve(parseSplitText('a\nb', 's'), { needLabels: true })).toEqual([
      { id: 'a', image: join(root, 'images/a.jpg'), label: join(root, 'masks/a.png') },
      { id: 'b', image: join(root, 'images/b.png'), label: join(root, 'masks/b.png') },
    ])
  })

  it('takes image paths and pairs; unlabeled lists need no masks', () => {
    const root = tree({ 'classes.txt': 'x\r\ny', 'images/a.jpg': '', 'more/c.png': '', 'm/c.png': '' })
    const ds = folderDataset(root)
    expect(ds.classNames).toEqual(['x', 'y'])
    expect(ds.resolve(parseSplitText('images/a.jpg\nmore/c.png', 'u'), { needLabels: false })).toEqual([
      { id: 'a', image: join(root, 'images/a.jpg'), label: null },
      { id: 'c', image: join(root, 'more/c.png'), label: null },
    ])
    expect(ds.resolve(parseSplitText('more/c.png m/c.png', 'l'), { needLabels: true })).toEqual([
      { id: 'c', image: join(root, 'more/c.png'), label: join(root, 'm/c.png') }])
  })

  it('reports missing images and masks with counts', () => {
    const root = tree({ 'classes.txt': CLASSES, 'images/a.jpg': '', 'images/b.jpg': '', 'masks/a.png': '' })
    const ds = folderDataset(root)
    expect(() => ds.resolve(parseSplitText('a\nb\nc', 'l.txt'), { needLabels: true, splitFile: 'l.txt' })).toThrow(
      `1 of 3 images listed in l.txt are missing under ${root}: images/c.jpg (line 3); ` +
      `2 of 3 labels listed in l.txt are missing under ${root}: masks/b.png (line 2), masks/c.png (line 3) ` +
      '(bare ids are looked for as images/<id>.jpg, .jpeg or .png and masks/<id>.png)')
    expect(ds.resolve(parseSplitText('a\nb', 'u.txt'), { needLabels: false })).toHaveLength(2)
  })

  it('refuses an id with two image files', () => {
    const root = tree({ 'classes.txt': CLASSES, 'images/a.jpg': '', 'images/a.png': '' })
    expect(() => folderDataset(root).resolve(parseSplitText('a', 's.txt'), { needLabels: false, splitFile: 's.txt' }))
      .toThrow(/s\.txt:1: 'a' matches images\/a\.(jpg|png) and images\/a\.(jpg|png); keep one/)
  })

  it.each([
    ['missing', undefined, /classes\.txt does not exist; a folder dataset needs classes\.txt with one class name per line/],
    ['with a blank line', 'a\n\nb\n', /classes\.txt:2: blank line; expected one class name per line/],
    ['with a duplicate name', 'a\nb\na\n', /classes\.txt:3: duplicate class name 'a' \(also on line 1\)/],
    ['empty', '', /classes\.txt names 0 classes; expected 1 to 255/],
    ['with padded names', 'a\n b\n', /classes\.txt:2: leading or trailing whitespace/],
  ])('refuses classes.txt %s', (_, text, message) => {
    const root = tree(text === undefined ? { 'images/a.jpg': '' } : { 'classes.txt': text })
    expect(() => folderDataset(root)).toThrow(message)
  })

  it('refuses an unknown dataset kind', () => {
    expect(() => openDataset('coco' as 'voc', '/tmp')).toThrow(`unknown dataset kind "coco"; expected 'voc', 'cityscapes' or 'folder'`)
  })
})
