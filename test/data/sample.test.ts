// readSample: encoded bytes as stored, signature checks, errors naming the file, skipBad.
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readSample } from '../../ts/data/dataset.ts'
import { encodeLabelPng, encodeRgbPng } from '../../ts/data/png.ts'
import { makeTree, tempDir } from './tree.ts'

let root: string
const rgb = encodeRgbPng(2, 1, Uint8Array.from([1, 2, 3, 4, 5, 6]))
const label = encodeLabelPng(2, 1, Uint8Array.from([0, 255]))
const jpeg = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46])
beforeAll(() => {
  root = makeTree(tempDir('sample'), { 'a.png': rgb, 'b.jpg': jpeg, 'a_label.png': label, 'html.jpg': '<html>', 'empty.png': '' })
})
afterAll(() => rmSync(root, { recursive: true, force: true }))
const at = (f: string) => join(root, f)

describe('readSample', () => {
  it('returns the stored bytes, not decoded pixels', async () => {
    const s = await readSample({ id: 'a', image: at('a.png'), label: at('a_label.png') })
    expect(Buffer.from(s.image).equals(rgb)).toBe(true)
    expect(Buffer.from(s.label!).equals(label)).toBe(true)
    const j = await readSample({ id: 'b', image: at('b.jpg'), label: null })
    expect(Array.from(j.image)).toEqual(Array.from(jpeg))
    expect(j.label).toBeNull()
  })
  it.each([
    ['a missing image', { image: 'nope.jpg', label: null }, /^image .*nope\.jpg does not exist$/],
    ['a missing label', { image: 'a.png', label: 'nope.png' }, /^label .*nope\.png does not exist$/],
    ['a non-image file', { image: 'html.jpg', label: null }, /^image .*html\.jpg starts with 3c68746d; expected a JPEG or PNG file$/],
    ['an empty file', { image: 'empty.png', label: null }, /^image .*empty\.png is empty; expected a JPEG or PNG file$/],
    ['a JPEG label', { image: 'a.png', label: 'b.jpg' }, /^label .*b\.jpg starts with ffd8ffe0; expected a PNG file$/],
  ])('refuses %s, naming it', async (_, ref, message) => {
    await expect(readSample({ id: 'x', image: at(ref.image), label: ref.label && at(ref.label) })).rejects.toThrow(message)
  })
  it('with skipBad, gives null and says why', async () => {
    const seen: string[] = []
    const s = await readSample({ id: 'x', image: at('html.jpg'), label: null }, { skipBad: true, onSkip: (e) => seen.push(e.message) })
    expect(s).toBeNull()
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatch(/html\.jpg starts with/)
    expect(await readSample({ id: 'a', image: at('a.png'), label: null }, { skipBad: true })).not.toBeNull()
  })
})
