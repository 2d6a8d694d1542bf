// Every shared split file (shared/data/splits, see its README): counts, formats, first ids,
// content hashes, and the set facts the README lists.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../../ts/paths.ts'
import { checkCityscapesVal } from '../../ts/data/cityscapes.ts'
import { readSplit, splitIdentity, type SplitEntry } from '../../ts/data/splits.ts'

const SPLITS = join(ROOT, '..', 'shared', 'data', 'splits')
const at = (file: string) => join(SPLITS, file)

// file, lines, final newline, bytes, sha16 (README table), line format, first id
const TABLE: [string, number, boolean, number, string, 'id' | 'pair', string][] = [
  ['prcl/VOC_split/662/3407/labeled_filename.txt', 662, false, 7943, 'e9bb5d18af804179', 'id', '2011_000068'],
  ['prcl/VOC_split/662/3407/unlabeled_filename.txt', 9920, false, 119039, 'a9a7e39271779cca', 'id', '2009_003012'],
  ['prcl/VOC_split/662/3407/valid_filename.txt', 1449, false, 17387, '6f8edc37993764f6', 'id', '2007_000033'],
  ['prcl/CityScapes_split/150/3407/labeled_filename.txt', 150, true, 5139, 'c6440f42f554e483', 'id', 'aachen_000013_000019_leftImg8bit'],
  ['prcl/CityScapes_split/150/3407/unlabeled_filename.txt', 2825, true, 97531, 'a40c9a815f19a824', 'id', 'strasbourg_000001_011990_leftImg8bit'],
  ['prcl/CityScapes_split/150/3407/valid_filename.txt', 1525, true, 50710, 'f2ec0777573e1ec0', 'id', 'munich_000013_000019_leftImg8bit'],
  ['u2pl/data/splits/pascal/662/labeled.txt', 662, false, 7943, 'e9bb5d18af804179', 'id', '2011_000068'],
  ['u2pl/data/splits/pascal/662/unlabeled.txt', 9920, false, 119039, 'a9a7e39271779cca', 'id', '2009_003012'],
  ['unimatch/splits/pascal/92/labeled.txt', 92, false, 5611, '8a02aa6a1253178b', 'pair', '2007_000733'],
  ['unimatch/splits/pascal/92/unlabeled.txt', 10490, false, 639889, 'a3eb5ef8d2ae547f', 'pair', '2009_000898'],
  ['unimatch/splits/pascal/1464/labeled.txt', 1464, false, 89303, 'b20486876df309c5', 'pair', '2007_000032'],
  ['unimatch/splits/pascal/1464/unlabeled.txt', 9118, false, 556197, '3ba331d08fee0751', 'pair', '2010_001777'],
  ['unimatch/splits/pascal/1_16/labeled.txt', 662, true, 40382, '0f5e114e6504c8af', 'pair', '2007_000032'],
  ['unimatch/splits/pascal/1_16/unlabeled.txt', 9920, true, 605120, '29b30bf7adb5d39e', 'pair', '2007_000039'],
  ['unimatch/splits/pascal/u2pl_1_16/labeled.txt', 662, true, 40382, 'a58cf5eda18c8e06', 'pair', '2011_000068'],
  ['unimatch/splits/pascal/u2pl_1_16/unlabeled.txt', 9920, true, 605120, '4f038ee0eef3dc96', 'pair', '2009_003012'],
  ['unimatch/splits/pascal/val.txt', 1449, true, 88389, 'df002e3a730c5767', 'pair', '2007_000033'],
  ['unimatch/splits/cityscapes/1_16/labeled.txt', 186, true, 24892, '64195914dce12311', 'pair', 'jena_000078_000019_leftImg8bit'],
  ['unimatch/splits/cityscapes/1_16/unlabeled.txt', 2789, true, 373888, '7f18e2aefb5e8859', 'pair', 'jena_000032_000019_leftImg8bit'],
  ['unimatch/splits/cityscapes/val.txt', 500, false, 65899, 'cf5aa35c0e4446bc', 'pair', 'frankfurt_000001_062250_leftImg8bit'],
]

const ids = async (file: string) => (await readSplit(at(file))).map((e) => e.id)
const overlap = (a: string[], b: string[]) => { const s = new Set(b); return a.filter((x) => s.has(x)).length }
const union = (...lists: string[][]) => new Set(lists.flat())

describe('shared split files', () => {
  it.each(TABLE)('%s: %i lines', async (file, lines, finalNewline, bytes, sha16, format, firstId) => {
    const raw = readFileSync(at(file))
    expect(raw.length).toBe(bytes)
    expect(raw.at(-1) === 0x0a).toBe(finalNewline)
    const entries = await readSplit(at(file))
    expect(entries).toHaveLength(lines)
    expect(entries[0]!.id).toBe(firstId)
    expect(entries.at(-1)!.line).toBe(lines)
    const isPair = (e: SplitEntry) => e.image !== undefined && e.label !== undefined
    const isBare = (e: SplitEntry) => e.image === undefined && e.label === undefined
    expect(entries.every(format === 'pair' ? isPair : isBare)).toBe(true)
    const identity = await splitIdentity(at(file))
    expect(identity.sha16).toBe(sha16)
    expect(identity.sha256).toMatch(/^[0-9a-f]{64}$/)
    expect(identity.sha256.startsWith(sha16)).toBe(true)
    expect(identity.lines).toBe(lines)
    expect(identity.file).toBe(at(file))
  })

  it('keeps the paths of pair lines as written', async () => {
    const [first] = await readSplit(at('unimatch/splits/cityscapes/1_16/labeled.txt'))
    expect(first).toEqual({
      id: 'jena_000078_000019_leftImg8bit', line: 1,
      image: 'leftImg8bit/train/jena/jena_000078_000019_leftImg8bit.png',
      label: 'gtFine/train/jena/jena_000078_000019_gtFine_labelTrainIds.png',
    })
  })
})

describe('README set facts', () => {
  it('PRCL 662 and U2PL 662 are byte-identical (same identity)', async () => {
    for (const kind of ['labeled', 'unlabeled']) {
      const prcl = await splitIdentity(at(`prcl/VOC_split/662/3407/${kind}_filename.txt`))
      const u2pl = await splitIdentity(at(`u2pl/data/splits/pascal/662/${kind}.txt`))
      expect(prcl.sha256).toBe(u2pl.sha256)
    }
  })

  it("UniMatch u2pl_1_16 lists the U2PL 662 ids in the same order, in pair format", async () => {
    expect(await ids('unimatch/splits/pascal/u2pl_1_16/labeled.txt')).toEqual(await ids('u2pl/data/splits/pascal/662/labeled.txt'))
    expect(await ids('unimatch/splits/pascal/u2pl_1_16/unlabeled.txt')).toEqual(await ids('u2pl/data/splits/pascal/662/unlabeled.txt'))
  })

  it('PRCL VOC 662 + 9,920 = 10,582 with no overlap, the same train_aug set as every UniMatch split', async () => {
    const labeled = await ids('prcl/VOC_split/662/3407/labeled_filename.txt')
    const unlabeled = await ids('prcl/VOC_split/662/3407/unlabeled_filename.txt')
    expect(overlap(labeled, unlabeled)).toBe(0)
    const trainAug = union(labeled, unlabeled)
    expect(trainAug.size).toBe(10582)
    for (const split of ['92', '1464', '1_16', 'u2pl_1_16']) {
      const l = await ids(`unimatch/splits/pascal/${split}/labeled.txt`)
      const u = await ids(`unimatch/splits/pascal/${split}/unlabeled.txt`)
      expect(overlap(l, u), split).toBe(0)
      expect(union(l, u), split).toEqual(trainAug)
    }
  })

  it('UniMatch 1_16 (CPS) shares 43 ids with the PRCL 662; 93 of its ids and all PRCL 662 and 92 ids are high-quality', async () => {
    const prcl = await ids('prcl/VOC_split/662/3407/labeled_filename.txt')
    const cps = await ids('unimatch/splits/pascal/1_16/labeled.txt')
    const hq = await ids('unimatch/splits/pascal/1464/labeled.txt')
    expect(overlap(cps, prcl)).toBe(43)
    expect(overlap(cps, hq)).toBe(93)
    expect(overlap(prcl, hq)).toBe(662)
    expect(overlap(await ids('unimatch/splits/pascal/92/labeled.txt'), hq)).toBe(92)
  })

  it("PRCL's VOC valid list is UniMatch's val.txt, disjoint from train_aug", async () => {
    const valid = await ids('prcl/VOC_split/662/3407/valid_filename.txt')
    expect(valid).toEqual(await ids('unimatch/splits/pascal/val.txt'))
    const trainAug = [...(await ids('prcl/VOC_split/662/3407/labeled_filename.txt')), ...(await ids('prcl/VOC_split/662/3407/unlabeled_filename.txt'))]
    expect(overlap(valid, trainAug)).toBe(0)
  })

  it('Cityscapes: PRCL 150 + 2,825 and UniMatch 186 + 2,789 cover the same 2,975 train images; labeled sets share 11', async () => {
    const pl = await ids('prcl/CityScapes_split/150/3407/labeled_filename.txt')
    const pu = await ids('prcl/CityScapes_split/150/3407/unlabeled_filename.txt')
    const ul = await ids('unimatch/splits/cityscapes/1_16/labeled.txt')
    const uu = await ids('unimatch/splits/cityscapes/1_16/unlabeled.txt')
    expect(union(pl, pu).size).toBe(2975)
    expect(union(pl, pu)).toEqual(union(ul, uu))
    expect(overlap(pl, ul)).toBe(11)
  })
})

describe('Cityscapes val lists', () => {
  it("flags PRCL's valid_filename.txt as the 1,525-image test list", async () => {
    const file = at('prcl/CityScapes_split/150/3407/valid_filename.txt')
    const entries = await readSplit(file)
    expect(() => checkCityscapesVal(entries, file)).toThrow(/valid_filename\.txt lists 1525 images from Cityscapes test cities \(munich 398.*berlin 544.*\): it is the official test list.*Q-eval-5.*UniMatch's splits\/cityscapes\/val\.txt/)
  })
  it("passes UniMatch's 500-image val list", async () => {
    expect(() => checkCityscapesVal([]) ).not.toThrow()
    const entries = await readSplit(at('unimatch/splits/cityscapes/val.txt'))
    expect(() => checkCityscapesVal(entries, 'val.txt')).not.toThrow()
  })
  it('refuses a train list used as val', async () => {
    const entries = await readSplit(at('prcl/CityScapes_split/150/3407/labeled_filename.txt'))
    expect(() => checkCityscapesVal(entries, 'l.txt')).toThrow(/l\.txt lists images from cities outside the Cityscapes val set \(aachen \d+/)
  })
})
