// Split parsing: line formats, newline handling, and refusals naming file and line.
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fileStem, identityOfText, parseSplitText, readSplit, splitIdentity } from '../../ts/data/splits.ts'

let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'prcl-splits-')) })
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function file(name: string, text: string): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

describe('parseSplitText', () => {
  it('reads bare ids, with or without a final newline', () => {
    const want = [{ id: '2011_000068', line: 1 }, { id: '2008_004588', line: 2 }]
    expect(parseSplitText('2011_000068\n2008_004588', 'f')).toEqual(want)
    expect(parseSplitText('2011_000068\n2008_004588\n', 'f')).toEqual(want)
  })
  it('accepts blank lines after the last entry (an editor\'s trailing newline)', () => {
    const want = [{ id: 'a', line: 1 }, { id: 'b', line: 2 }]
    expect(parseSplitText('a\nb\n\n', 'f')).toEqual(want)
    expect(parseSplitText('a\r\nb\r\n\r\n', 'f')).toEqual(want)
    expect(parseSplitText('a\nb\n\n\n', 'f')).toEqual(want)
    expect(identityOfText('a\nb\n\n', 'f').lines).toBe(2)
    expect(() => parseSplitText('\n\n', 's.txt')).toThrow(/^split file s\.txt is empty/)
  })
  it('strips CR from CRLF line ends', () => {
    expect(parseSplitText('a\r\nb\r\n', 'f').map((e) => e.id)).toEqual(['a', 'b'])
  })
  it('reads UniMatch pairs (one space) and CPS pairs (tab)', () => {
    expect(parseSplitText('JPEGImages/x.jpg SegmentationClass/x.png\n', 'f')).toEqual([
      { id: 'x', image: 'JPEGImages/x.jpg', label: 'SegmentationClass/x.png', line: 1 }])
    expect(parseSplitText('img/a_leftImg8bit.png\tgt/a_gtFine_labelTrainIds.png', 'f')).toEqual([
      { id: 'a_leftImg8bit', image: 'img/a_leftImg8bit.png', label: 'gt/a_gtFine_labelTrainIds.png', line: 1 }])
  })
  it('reads single image paths; the id is the file stem', () => {
    expect(parseSplitText('leftImg8bit/train/jena/jena_000001_000019_leftImg8bit.png\nimages/b.v2.jpg\nc.png', 'f')).toEqual([
      { id: 'jena_000001_000019_leftImg8bit', image: 'leftImg8bit/train/jena/jena_000001_000019_leftImg8bit.png', line: 1 },
      { id: 'b.v2', image: 'images/b.v2.jpg', line: 2 },
      { id: 'c', image: 'c.png', line: 3 },
    ])
    expect(fileStem('a/b/.hidden')).toBe('.hidden')
  })
  it.each([
    ['a blank line in the middle', 'a\n\nb\n', /^s\.txt:2: blank line/],
    ['a duplicate entry, naming both lines', 'a\nb\nc\nb\n', /^s\.txt:4: duplicate entry 'b' \(also on line 2\)/],
    ['the same image twice in pair form', 'J/a.jpg S/a.png\nJ/a.jpg S/b.png', /^s\.txt:2: duplicate entry 'a' \(also on line 1\)/],
    ['bare ids mixed with pairs', 'a\nJ/b.jpg S/b.png\n', /^s\.txt:2: line is an 'image mask' pair \(one space\) but line 1 is a bare id; a split file must use one format/],
    ['paths mixed with pairs', 'J/a.jpg\nJ/b.jpg S/b.png\n', /^s\.txt:2: .* but line 1 is a single path/],
    ['space pairs mixed with tab pairs', 'a.jpg\tb.png\nc.jpg d.png', /^s\.txt:2: line is an 'image mask' pair \(one space\) but line 1 is an 'image<TAB>mask' pair/],
    ['two spaces between fields', 'J/a.jpg  S/a.png', /^s\.txt:1: expected an 'image mask' pair \(one space\)/],
    ['three fields', 'a b c', /^s\.txt:1: expected an 'image mask' pair/],
    ['trailing whitespace', 'a\nb \n', /^s\.txt:2: leading or trailing whitespace/],
    ['a lone carriage return', 'a\rb\n', /^s\.txt:1: carriage return inside the line/],
    ['a directory instead of a file', 'images/', /^s\.txt:1: "images\/" names no file/],
    ['an empty file', '', /^split file s\.txt is empty/],
  ])('refuses %s', (_, text, message) => {
    expect(() => parseSplitText(text, 's.txt')).toThrow(message)
  })
})

describe('readSplit', () => {
  it('reads a file and names it in errors', async () => {
    expect((await readSplit(file('ok.txt', 'a\nb'))).map((e) => e.id)).toEqual(['a', 'b'])
    const dup = file('dup.txt', 'x\ny\nx\n')
    await expect(readSplit(dup)).rejects.toThrow(`${dup}:3: duplicate entry 'x' (also on line 1)`)
    const mixed = file('mixed.txt', 'x\nimages/y.jpg\n')
    await expect(readSplit(mixed)).rejects.toThrow(`${mixed}:2: line is a single path but line 1 is a bare id`)
    const blank = file('blank.txt', 'x\n\ny\n')
    await expect(readSplit(blank)).rejects.toThrow(`${blank}:2: blank line`)
  })
  it('refuses a missing file, a directory and non-UTF-8 bytes', async () => {
    const missing = join(dir, 'nope', 'labeled.txt')
    await expect(readSplit(missing)).rejects.toThrow(`split file ${missing} does not exist`)
    const sub = join(dir, 'sub')
    mkdirSync(sub)
    await expect(readSplit(sub)).rejects.toThrow(`split file ${sub} is a directory`)
    const bin = join(dir, 'bin.txt')
    writeFileSync(bin, Buffer.from([0x61, 0xff, 0xfe, 0x0a]))
    await expect(readSplit(bin)).rejects.toThrow(`split file ${bin} is not UTF-8 text`)
  })
})

describe('splitIdentity', () => {
  it('hashes the bytes and counts lines either way the file ends', async () => {
    const sha = (s: string) => createHash('sha256').update(s).digest('hex')
    const a = identityOfText('a\nb', 'x.txt')
    expect(a).toEqual({ sha256: sha('a\nb'), sha16: sha('a\nb').slice(0, 16), lines: 2, file: 'x.txt' })
    expect(identityOfText('a\nb\n', 'x.txt').lines).toBe(2)
    expect(identityOfText('a\nb\n', 'x.txt').sha256).not.toBe(a.sha256)
    const path = file('id.txt', 'a\nb')
    expect(await splitIdentity(path)).toEqual({ ...a, file: path })
    expect(await splitIdentity({ text: Buffer.from('a\nb'), file: 'mem' })).toEqual({ ...a, file: 'mem' })
    await expect(splitIdentity(join(dir, 'none.txt'))).rejects.toThrow(/split file .*none\.txt does not exist/)
  })
})
