// Seeded split generation: random and ReCo-style class-balanced.
import { describe, expect, it } from 'vitest'
import { generateSplit } from '../../ts/data/splits.ts'
import { Rng } from '../../ts/rng.ts'

const ids = Array.from({ length: 200 }, (_, i) => `img_${String(i).padStart(4, '0')}`)

function checkPartition(all: readonly string[], s: { labeled: string[]; unlabeled: string[] }, count: number) {
  expect(s.labeled).toHaveLength(count)
  expect(new Set([...s.labeled, ...s.unlabeled]).size).toBe(all.length)
  expect(s.labeled.length + s.unlabeled.length).toBe(all.length)
  const labeled = new Set(s.labeled)
  expect(s.unlabeled).toEqual(all.filter((id) => !labeled.has(id))) // original order kept
}

describe('generateSplit random', () => {
  it('is deterministic for a seed and differs for another', async () => {
    const a = await generateSplit({ mode: 'random', ids, count: 20, seed: 3407 })
    const b = await generateSplit({ mode: 'random', ids, count: 20, seed: 3407 })
    const c = await generateSplit({ mode: 'random', ids, count: 20, seed: 0 })
    expect(a).toEqual(b)
    expect(c.labeled).not.toEqual(a.labeled)
    checkPartition(ids, a, 20)
    checkPartition(ids, c, 20)
    expect(a.labeled).not.toEqual(ids.slice(0, 20)) // actually shuffled
  })
  it('pins the split a seed gives (a generated split is named by its hash: changing this changes benchmarks)', async () => {
    // Computed with Rng.keyed(seed, STREAM.split) of ts/rng.ts; a change here means every seeded split changes.
    const a = await generateSplit({ mode: 'random', ids, count: 20, seed: 3407 })
    expect(a.labeled).toEqual([
      'img_0127', 'img_0135', 'img_0064', 'img_0070', 'img_0043', 'img_0001', 'img_0199', 'img_0009', 'img_0077', 'img_0118',
      'img_0148', 'img_0103', 'img_0086', 'img_0186', 'img_0114', 'img_0181', 'img_0100', 'img_0142', 'img_0197', 'img_0145',
    ])
    const big = await generateSplit({ mode: 'random', ids, count: 5, seed: 2 ** 32 + 3407 }) // not seed 3407's
    expect(big.labeled).toEqual(['img_0184', 'img_0169', 'img_0037', 'img_0003', 'img_0070'])
  })
  it('allows labeling everything', async () => {
    const s = await generateSplit({ mode: 'random', ids, count: ids.length, seed: 1 })
    checkPartition(ids, s, ids.length)
  })
  it.each([
    ['count 0', { count: 0, seed: 1, ids }, /count must be an integer from 1 to 200 \(the number of ids\), got 0/],
    ['count above the ids', { count: 201, seed: 1, ids }, /got 201/],
    ['a fractional seed', { count: 2, seed: 1.5, ids }, /seed must be a non-negative integer, got 1.5/],
    ['duplicate ids', { count: 1, seed: 1, ids: ['a', 'b', 'a'] }, /id 'a' appears twice/],
  ])('refuses %s', async (_, args, message) => {
    await expect(generateSplit({ mode: 'random', ...args })).rejects.toThrow(message)
  })
})

describe('generateSplit class-balanced', () => {
  // One class per image, very unbalanced: class k appears in 2 + 30 >> k images (k = 0..4).
  const single = new Map<string, number[]>()
  let n = 0
  for (let k = 0; k < 5; k++) for (let j = 0; j < 2 + (30 >> k); j++) single.set(`c${k}_${n++}`, [k])
  const singleIds = [...single.keys()]
  const classCounts = (labeled: string[], classes: Map<string, number[]>) => {
    const counts = new Map<number, number>()
    for (const id of labeled) for (const c of classes.get(id)!) counts.set(c, (counts.get(c) ?? 0) + 1)
    return counts
  }

  it('covers every class before repeating one', async () => {
    for (const seed of [0, 1, 2, 3407]) {
      const s = await generateSplit({ mode: 'class-balanced', ids: singleIds, count: 10, seed, classesOf: single })
      checkPartition(singleIds, s, 10)
      expect(s.labeled.slice(0, 5).map((id) => single.get(id)![0]).sort()).toEqual([0, 1, 2, 3, 4])
      expect([...classCounts(s.labeled, single).values()]).toEqual([2, 2, 2, 2, 2])
    }
    const pinned = await generateSplit({ mode: 'class-balanced', ids: singleIds, count: 10, seed: 3407, classesOf: single })
    expect(pinned.labeled).toEqual(['c1_35', 'c0_1', 'c2_49', 'c3_62', 'c4_65', 'c1_45', 'c0_5', 'c2_50', 'c3_60', 'c4_64'])
    // A random split of the same size is dominated by class 0.
    const r = await generateSplit({ mode: 'random', ids: singleIds, count: 10, seed: 0 })
    expect(classCounts(r.labeled, single).get(0)).toBeGreaterThan(2)
  })

  it('each pick contains a least-sampled class among those still available', async () => {
    const rng = Rng.keyed(77)
    const multi = new Map<string, number[]>()
    for (const id of ids) multi.set(id, [...new Set(Array.from({ length: 1 + rng.below(3) }, () => (rng.float() < 0.7 ? rng.below(3) : rng.below(12))))])
    const s = await generateSplit({ mode: 'class-balanced', ids, count: 60, seed: 5, classesOf: multi })
    checkPartition(ids, s, 60)
    const sampled = new Map<number, number>()
    const pool = new Set(ids)
    for (const id of s.labeled) {
      const available = new Set([...pool].flatMap((p) => multi.get(p)!))
      const least = Math.min(...[...available].map((c) => sampled.get(c) ?? 0))
      expect(multi.get(id)!.some((c) => available.has(c) && (sampled.get(c) ?? 0) === least)).toBe(true)
      pool.delete(id)
      for (const c of multi.get(id)!) sampled.set(c, (sampled.get(c) ?? 0) + 1)
    }
    expect(sampled.size).toBe(new Set(ids.flatMap((id) => multi.get(id)!)).size)
  })

  it('is deterministic, takes an async classesOf, drops 255 and honours minClasses', async () => {
    const classesOf = async (id: string) => new Set([...single.get(id)!, 255, ...(id.endsWith('1') ? [9] : [])])
    const a = await generateSplit({ mode: 'class-balanced', ids: singleIds, count: 6, seed: 8, classesOf, concurrency: 3 })
    const b = await generateSplit({ mode: 'class-balanced', ids: singleIds, count: 6, seed: 8, classesOf })
    expect(a).toEqual(b)
    const two = await generateSplit({ mode: 'class-balanced', ids: singleIds, count: 3, seed: 8, classesOf, minClasses: 2 })
    for (const id of two.labeled) expect(id.endsWith('1')).toBe(true)
    await expect(generateSplit({ mode: 'class-balanced', ids: singleIds, count: 50, seed: 8, classesOf, minClasses: 2 }))
      .rejects.toThrow(/only 7 of 66 images have at least 2 classes; cannot label 50/)
  })

  it('refuses a missing or bad class set', async () => {
    await expect(generateSplit({ mode: 'class-balanced', ids: ['a', 'b'], count: 1, seed: 0, classesOf: new Map([['a', [1]]]) }))
      .rejects.toThrow(/no class set for id 'b'/)
    await expect(generateSplit({ mode: 'class-balanced', ids: ['a'], count: 1, seed: 0, classesOf: () => [300] }))
      .rejects.toThrow(/class 300 of 'a' is not an integer 0\.\.255/)
  })
})
