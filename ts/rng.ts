// The project's one seeded random generator. Every random draw the driver makes (sampling,
// augmentation parameters, split generation, the synthetic dataset, syntheticBatch) comes from an
// Rng built with Rng.keyed(seed, STREAM.x, ...): one independent stream per purpose, so adding a
// draw to one purpose never shifts another's. States are plain arrays of four int32s, saved in
// checkpoints: a resumed run draws exactly what the uninterrupted one would have.
//
// The generator is pure-rand's xoroshiro128+ (its uniformInt / uniformFloat64 distributions draw
// from it); a keyed stream's 128-bit state is hashed from (seed, keys) with splitmix64's finaliser.
// Not cryptographic. Same seed and keys, same sequence, on every platform.
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64'
import { uniformInt } from 'pure-rand/distribution/uniformInt'
import { xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus'

/** Stream keys: the first key of every Rng.keyed call, one per purpose. Never renumber: a key's
 *  value is part of what a seed means (split identities, synthetic bytes, a run's draws). */
export const STREAM = {
  /** The experiment's augmentation and mixing parameters. */
  augment: 0,
  /** The labeled sampler's shuffled passes. */
  labeledSampler: 1,
  /** The unlabeled sampler's shuffled passes. */
  unlabeledSampler: 2,
  /** One synthetic image: Rng.keyed(seed, STREAM.synthImage, imageIndex). */
  synthImage: 3,
  /** The synthetic dataset's labeled subset. */
  synthSplit: 4,
  /** generateSplit's shuffle. */
  split: 5,
  /** syntheticBatch's noise. */
  syntheticBatch: 6,
  /** The fixed augmentation and mixing parameters of the unlabeled picture strips (ts/report/board.ts). */
  pictures: 7,
  /** Where each val image's crop falls in one evaluation (eval.protocol prcl_random_crop):
   *  Rng.keyed(seed, STREAM.evalCrop, step), so it needs no state of its own. */
  evalCrop: 8,
  /** One scene of the handwritten-digit dataset: Rng.keyed(seed, STREAM.digitsImage, imageIndex). */
  digitsImage: 9,
} as const

export type StreamKey = (typeof STREAM)[keyof typeof STREAM]

type Gen = ReturnType<typeof xoroshiro128plusFromState>

const M64 = (1n << 64n) - 1n
const GOLDEN = 0x9e3779b97f4a7c15n
/** Domain tag, so that these streams differ from any plain splitmix64 seeding. */
const DOMAIN = 0x70726e672d6b6579n // "prng-key"

/** splitmix64's finaliser: a bijection on 64-bit words. */
function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64
  return z ^ (z >> 31n)
}

function checkKey(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    const got = typeof v === 'number' ? String(v) : `${typeof v} ${JSON.stringify(v)}`
    throw new RangeError(`Rng.keyed: ${what} must be a non-negative safe integer, got ${got}`)
  }
  return v
}

const isInt32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff

export class Rng {
  private readonly gen: Gen

  private constructor(gen: Gen) {
    this.gen = gen
  }

  /** An independent stream for (seed, ...keys): e.g. Rng.keyed(seed, STREAM.labeledSampler),
   *  Rng.keyed(seed, STREAM.synthImage, imageIndex). Seed and keys are non-negative safe integers;
   *  all 53 bits count (a seed above 2^32 does not collide with its low 32 bits), and so does the
   *  number of keys (keyed(s, 1) and keyed(s, 1, 0) differ). */
  static keyed(seed: number, ...keys: number[]): Rng {
    checkKey('seed', seed)
    keys.forEach((k, i) => checkKey(`key ${i + 1}`, k))
    let h = mix64(DOMAIN ^ BigInt(keys.length))
    for (const w of [seed, ...keys]) h = mix64(((h + GOLDEN) & M64) ^ BigInt(w))
    // Two splitmix64 outputs from h fill the 128-bit state.
    const s0 = mix64((h + GOLDEN) & M64)
    const s1 = mix64((h + 2n * GOLDEN) & M64)
    const hi = (x: bigint) => Number(BigInt.asIntN(32, x >> 32n))
    const lo = (x: bigint) => Number(BigInt.asIntN(32, x))
    // pure-rand's state order: [s0 high, s0 low, s1 high, s1 low]. All-zero is xoroshiro's one
    // stuck state (chance 2^-128); step off it.
    const state = [hi(s0), lo(s0), hi(s1), lo(s1)]
    if (!state.some((v) => v !== 0)) state[1] = 1
    return new Rng(xoroshiro128plusFromState(state))
  }

  /** Resumes a stream from state(). Throws a RangeError naming what is wrong with `state`. */
  static fromState(state: readonly number[]): Rng {
    if (!Array.isArray(state)) {
      throw new RangeError(`Rng.fromState: state must be an array of 4 int32 numbers (from Rng.state()), got ${state === null ? 'null' : typeof state}`)
    }
    if (state.length !== 4) throw new RangeError(`Rng.fromState: state must have 4 entries (from Rng.state()), got ${state.length}`)
    state.forEach((v, i) => {
      if (!isInt32(v)) {
        const got = typeof v === 'number' ? String(v) : `${typeof v} ${JSON.stringify(v)}`
        throw new RangeError(`Rng.fromState: state[${i}] must be an int32 (-2147483648..2147483647), got ${got}`)
      }
    })
    if (state.every((v) => v === 0)) throw new RangeError('Rng.fromState: state is all zeros, which no Rng produces (xoroshiro128+ would draw only zeros)')
    return new Rng(xoroshiro128plusFromState([state[0]!, state[1]!, state[2]!, state[3]!]))
  }

  /** Four int32s, JSON-serialisable; Rng.fromState(state()) continues exactly from here. */
  state(): number[] {
    return [...this.gen.getState()]
  }

  /** Uniform integer in [lo, hi], both included (safe integers, lo <= hi). */
  int(lo: number, hi: number): number {
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || lo > hi) {
      throw new RangeError(`Rng.int(lo, hi) needs safe integers with lo <= hi, got ${lo}, ${hi}`)
    }
    return uniformInt(this.gen, lo, hi)
  }

  /** Uniform integer in [0, n), n a positive safe integer. */
  below(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`Rng.below(n) needs a positive safe integer, got ${n}`)
    return uniformInt(this.gen, 0, n - 1)
  }

  /** Uniform in [0, 1): a multiple of 2^-53. */
  float(): number {
    return uniformFloat64(this.gen)
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float()
  }

  /** Gaussian (Box–Muller; two uniform draws per call, nothing cached, so state() stays whole). */
  normal(mean = 0, sd = 1): number {
    const u = this.float(), v = this.float()
    return mean + sd * Math.sqrt(-2 * Math.log(1 - u)) * Math.cos(2 * Math.PI * v)
  }

  /** True with probability p; p <= 0 is never and p >= 1 always, neither drawing. */
  chance(p: number): boolean {
    if (Number.isNaN(p)) throw new RangeError('Rng.chance(p) needs a number, got NaN')
    return p >= 1 ? true : p <= 0 ? false : this.float() < p
  }

  /** A uint32 seed for the worker's own draws (ClassMix). */
  seed32(): number {
    return this.int(0, 0xffffffff)
  }

  /** A uniformly random order of 0..n-1 (Fisher–Yates). */
  permutation(n: number): number[] {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`Rng.permutation(n) needs a non-negative safe integer, got ${n}`)
    const a = Array.from({ length: n }, (_, i) => i)
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(0, i)
      ;[a[i], a[j]] = [a[j]!, a[i]!]
    }
    return a
  }

  /** A shuffled copy of `items` (Fisher–Yates; the same draws as permutation(items.length)). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = items.slice()
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i)
      const t = out[i]!
      out[i] = out[j]!
      out[j] = t
    }
    return out
  }
}
