// Class sets from label PNGs, and class-balanced generation fed from real files.
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LABEL_ID_TO_TRAIN_ID } from '../../ts/data/cityscapes.ts'
import { classesInLabel, labelClasses } from '../../ts/data/label-classes.ts'
import { encodeLabelPng, encodeRgbPng } from '../../ts/data/png.ts'
import { generateSplit } from '../../ts/data/splits.ts'
import { makeTree, tempDir } from './tree.ts'

let root: string
beforeAll(() => {
  const files: Record<string, Uint8Array> = { 'rgb.png': encodeRgbPng(1, 1, new Uint8Array(3)) }
  for (let i = 0; i < 12; i++) files[`m${i}.png`] = encodeLabelPng(2, 2, Uint8Array.from([0, 255, 1 + (i % 3), 0]))
  root = makeTree(tempDir('classes'), files)
})
afterAll(() => rmSync(root, { recursive: true, force: true }))

describe('label classes', () => {
  it('lists the values present, dropping 255, mapped through a LUT when given', () => {
    expect([...classesInLabel(Uint8Array.from([0, 0, 255, 5]), null)].sort()).toEqual([0, 5])
    // Cityscapes labelIds: 7 road → 0, 26 car → 13, 1 (ego vehicle) → ignore
    expect([...classesInLabel(Uint8Array.from([7, 26, 1, 7]), LABEL_ID_TO_TRAIN_ID)].sort((a, b) => a - b)).toEqual([0, 13])
  })
  it('reads a label file, naming it when it is not a usable label', async () => {
    expect([...(await labelClasses(join(root, 'm2.png'), null))].sort()).toEqual([0, 3])
    await expect(labelClasses(join(root, 'rgb.png'), null)).rejects.toThrow(/rgb\.png: label PNG is RGB/)
    await expect(labelClasses(join(root, 'none.png'), null)).rejects.toThrow(/cannot read label .*none\.png/)
  })
  it('feeds class-balanced generation', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `m${i}`)
    const s = await generateSplit({ mode: 'class-balanced', ids, count: 3, seed: 1, classesOf: (id) => labelClasses(join(root, `${id}.png`), null) })
    // Every image has class 0 and one of 1, 2, 3: three picks must cover all three.
    const covered = new Set<number>()
    for (const id of s.labeled) for (const c of await labelClasses(join(root, `${id}.png`), null)) covered.add(c)
    expect([...covered].sort()).toEqual([0, 1, 2, 3])
  })
})
