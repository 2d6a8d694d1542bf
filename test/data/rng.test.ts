// ts/rng.ts: the one seeded generator behind sampling, augmentation, splits and synthetic data.
import { describe, expect, it } from 'vitest'
import { Rng, STREAM } from '../../ts/rng.ts'

const draws = (r: Rng, n = 8) => Array.from({ length: n }, () => r.int(0, 0xffffffff))

/** Pearson's chi-square statistic of counts against a uniform expectation. */
function chiSquare(counts: number[]): number {
  const total = counts.reduce((a, b) => a + b, 0)
  const e = total / counts.length
  return counts.reduce((a, c) => a + (c - e) ** 2 / e, 0)
}

describe('Rng.keyed', () => {
  it('is reproducible: same seed and keys, same sequence', () => {
    expect(draws(Rng.keyed(7, STREAM.labeledSampler))).toEqual(draws(Rng.keyed(7, STREAM.labeledSampler)))
    expect(Rng.keyed(7, STREAM.synthImage, 12).state()).toEqual(Rng.keyed(7, STREAM.synthImage, 12).state())
  })

  it('gives distinct streams for distinct seeds, keys, key order and key count', () => {
    const keyings: number[][] = [
      [0], [1], [2], [1, 0], [1, 1], [1, 2], [0, 1], [1, 1, 0], [1, 0, 1], [2 ** 32 + 1], [2 ** 32 + 1, 0],
      [2 ** 32], [Number.MAX_SAFE_INTEGER], [Number.MAX_SAFE_INTEGER - 2 ** 32],
      ...Object.values(STREAM).map((k) => [3407, k]),
    ]
    const seen = new Map<string, string>()
    for (const [seed, ...keys] of keyings) {
      const d = JSON.stringify(draws(Rng.keyed(seed!, ...keys), 4))
      expect(seen.get(d), `keyed(${[seed, ...keys]}) repeats keyed(${seen.get(d)})`).toBeUndefined()
      seen.set(d, String([seed, ...keys]))
    }
  })

  it('does not collide a seed above 2^32 with its low 32 bits', () => {
    for (const seed of [0, 1, 5, 3407, 0xffffffff]) {
      expect(draws(Rng.keyed(seed + 2 ** 32, STREAM.split))).not.toEqual(draws(Rng.keyed(seed, STREAM.split)))
      expect(draws(Rng.keyed(seed + 2 ** 40, STREAM.split))).not.toEqual(draws(Rng.keyed(seed, STREAM.split)))
    }
  })

  it('streams of neighbouring seeds and keys are not correlated', () => {
    // Bits drawn from keyed(s, k) and keyed(s, k + 1) (and s, s + 1) agree about half the time.
    for (const [a, b] of [[Rng.keyed(1, 1), Rng.keyed(1, 2)], [Rng.keyed(1, 1), Rng.keyed(2, 1)], [Rng.keyed(9, 3, 0), Rng.keyed(9, 3, 1)]] as const) {
      let same = 0
      for (let i = 0; i < 20_000; i++) if (a.below(2) === b.below(2)) same++
      expect(Math.abs(same / 20_000 - 0.5)).toBeLessThan(0.02)
    }
  })

  it('pins the stream definition (these values are part of what a seed means)', () => {
    const r = Rng.keyed(3407, STREAM.split)
    expect(r.state()).toEqual([1702118235, -2074126111, 355444505, 1878622731])
    expect(Array.from({ length: 6 }, () => r.int(0, 999))).toEqual([268, 718, 135, 919, 804, 28])
  })

  it.each([
    ['a negative seed', () => Rng.keyed(-1), /seed must be a non-negative safe integer, got -1/],
    ['a fractional seed', () => Rng.keyed(1.5), /seed must be a non-negative safe integer, got 1.5/],
    ['an unsafe seed', () => Rng.keyed(2 ** 53), /seed must be a non-negative safe integer/],
    ['a NaN seed', () => Rng.keyed(Number.NaN), /seed must be .* got NaN/],
    ['a string seed', () => Rng.keyed('3' as unknown as number), /seed must be .* got string "3"/],
    ['a negative key', () => Rng.keyed(1, 2, -3), /key 2 must be a non-negative safe integer, got -3/],
  ])('refuses %s', (_, f, message) => {
    expect(f).toThrow(RangeError)
    expect(f).toThrow(message)
  })
})

describe('state and fromState', () => {
  it('resume exactly mid-stream, through JSON, for every kind of draw', () => {
    const r = Rng.keyed(11, STREAM.augment)
    for (let i = 0; i < 37; i++) r.float()
    r.normal()
    r.permutation(9)
    const saved = JSON.parse(JSON.stringify(r.state())) as number[]
    const mixed = (g: Rng) => [g.int(-5, 5), g.below(1000), g.float(), g.uniform(2, 3), g.normal(1, 2), g.chance(0.5), g.seed32(), ...g.permutation(6), ...g.shuffle(['a', 'b', 'c', 'd'])]
    const a = mixed(r)
    const b = mixed(Rng.fromState(saved))
    expect(b).toEqual(a)
    expect(r.state()).not.toEqual(saved)
  })

  it('state() is four int32s and a copy', () => {
    const r = Rng.keyed(1, 2)
    const s = r.state()
    expect(s).toHaveLength(4)
    for (const v of s) expect(v === (v | 0)).toBe(true)
    s[0] = 12345
    expect(r.state()[0]).not.toBe(12345)
  })

  it.each([
    ['not an array', { a: 1 }, /state must be an array of 4 int32 numbers .*got object/],
    ['null', null, /got null/],
    ['too short', [1, 2, 3], /state must have 4 entries .*got 3/],
    ['too long', [1, 2, 3, 4, 5], /got 5/],
    ['a fraction', [1, 2.5, 3, 4], /state\[1\] must be an int32 .*got 2.5/],
    ['a string', [1, 2, '3', 4], /state\[2\] must be an int32 .*got string "3"/],
    ['beyond int32', [1, 2, 3, 2 ** 31], /state\[3\] must be an int32 .*got 2147483648/],
    ['NaN', [Number.NaN, 2, 3, 4], /state\[0\] must be an int32 .*got NaN/],
    ['all zeros', [0, 0, 0, 0], /all zeros/],
  ])('fromState refuses %s', (_, state, message) => {
    const f = () => Rng.fromState(state as unknown as number[])
    expect(f).toThrow(RangeError)
    expect(f).toThrow(message)
  })
})

describe('draws', () => {
  it('int(lo, hi) includes both ends and is roughly uniform (chi-square over 60,000 draws)', () => {
    const r = Rng.keyed(5, 100)
    const counts = new Array<number>(12).fill(0)
    for (let i = 0; i < 60_000; i++) {
      const v = r.int(-4, 7)
      expect(Number.isInteger(v)).toBe(true)
      counts[v + 4]!++ // an out-of-range value would land outside the 12 bins
    }
    expect(counts).toHaveLength(12)
    for (const c of counts) expect(c).toBeGreaterThan(0)
    expect(chiSquare(counts)).toBeLessThan(35.7) // 11 degrees of freedom, p = 1e-4
    expect(r.int(3, 3)).toBe(3)
  })

  it('below(n) stays in [0, n) and is roughly uniform (chi-square over 60,000 draws)', () => {
    const r = Rng.keyed(6, 100)
    const counts = new Array<number>(10).fill(0)
    for (let i = 0; i < 60_000; i++) {
      const v = r.below(10)
      expect(v >= 0 && v < 10 && Number.isInteger(v)).toBe(true)
      counts[v]!++
    }
    expect(chiSquare(counts)).toBeLessThan(33.7) // 9 degrees of freedom, p = 1e-4
    expect(r.below(1)).toBe(0)
    // Ranges beyond 32 bits stay in range too.
    for (let i = 0; i < 200; i++) {
      const v = r.below(2 ** 40 + 3)
      expect(v >= 0 && v < 2 ** 40 + 3 && Number.isInteger(v)).toBe(true)
    }
  })

  it('float, uniform and normal have the right ranges and moments', () => {
    const r = Rng.keyed(8, 100)
    let sum = 0, sumN = 0, sumN2 = 0
    const n = 50_000
    for (let i = 0; i < n; i++) {
      const f = r.float()
      expect(f >= 0 && f < 1).toBe(true)
      sum += f
      const u = r.uniform(-2, 3)
      expect(u >= -2 && u < 3).toBe(true)
      const g = r.normal(10, 2)
      sumN += g
      sumN2 += g * g
    }
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.01)
    const mean = sumN / n
    expect(Math.abs(mean - 10)).toBeLessThan(0.05)
    expect(Math.abs(Math.sqrt(sumN2 / n - mean * mean) - 2)).toBeLessThan(0.05)
  })

  it('chance(p): never at p <= 0, always at p >= 1, neither drawing; about p otherwise', () => {
    const r = Rng.keyed(9, 100)
    const before = r.state()
    for (const p of [0, -1, -Infinity]) expect(r.chance(p)).toBe(false)
    for (const p of [1, 2, Infinity]) expect(r.chance(p)).toBe(true)
    expect(r.state()).toEqual(before)
    let hits = 0
    for (let i = 0; i < 20_000; i++) if (r.chance(0.3)) hits++
    expect(Math.abs(hits / 20_000 - 0.3)).toBeLessThan(0.015)
    expect(() => r.chance(Number.NaN)).toThrow(RangeError)
  })

  it('seed32 is a uint32', () => {
    const r = Rng.keyed(10, 100)
    for (let i = 0; i < 1000; i++) {
      const s = r.seed32()
      expect(Number.isInteger(s) && s >= 0 && s <= 0xffffffff).toBe(true)
    }
  })

  it('permutation and shuffle are permutations, shuffle a copy, both covering every order', () => {
    const r = Rng.keyed(12, 100)
    for (const n of [0, 1, 2, 7, 50]) expect([...r.permutation(n)].sort((a, b) => a - b)).toEqual([...Array(n).keys()])
    const items = ['a', 'b', 'c', 'd', 'e', 'f', 'g']
    const copy = items.slice()
    const s = r.shuffle(items)
    expect(items).toEqual(copy)
    expect(s).not.toBe(items)
    expect([...s].sort()).toEqual(items)
    // All 6 orders of three items, each about a sixth of the time.
    const orders = new Map<string, number>()
    for (let i = 0; i < 6000; i++) {
      const k = r.shuffle([1, 2, 3]).join('')
      orders.set(k, (orders.get(k) ?? 0) + 1)
    }
    expect(orders.size).toBe(6)
    expect(chiSquare([...orders.values()])).toBeLessThan(25.7) // 5 degrees of freedom, p = 1e-4
    // shuffle draws what permutation draws.
    const a = Rng.keyed(13), b = Rng.keyed(13)
    expect(a.shuffle(items)).toEqual(b.permutation(items.length).map((i) => items[i]))
  })

  it('refuses bad arguments with a RangeError', () => {
    const r = Rng.keyed(1)
    expect(() => r.int(3, 2)).toThrow(/lo <= hi, got 3, 2/)
    expect(() => r.int(0, 1.5)).toThrow(RangeError)
    expect(() => r.below(0)).toThrow(/positive safe integer, got 0/)
    expect(() => r.below(2.5)).toThrow(RangeError)
    expect(() => r.permutation(-1)).toThrow(RangeError)
  })
})
