// The driver's seeded random streams. Every random choice of a run is drawn here, and the
// generators' states are saved in checkpoints, so a resumed run draws exactly what the
// uninterrupted one would have.
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64'
import { uniformInt } from 'pure-rand/distribution/uniformInt'
import { xoroshiro128plus, xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus'

type Gen = ReturnType<typeof xoroshiro128plus>

export class Rng {
  private gen: Gen

  private constructor(gen: Gen) {
    this.gen = gen
  }

  static seeded(seed: number, stream = 0): Rng {
    // Distinct streams from one seed: mix the stream id into the seed.
    return new Rng(xoroshiro128plus((seed ^ Math.imul(stream + 1, 0x9e3779b1)) | 0))
  }

  static fromState(state: readonly number[]): Rng {
    return new Rng(xoroshiro128plusFromState(state))
  }

  state(): number[] {
    return [...this.gen.getState()]
  }

  /** Uniform integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return uniformInt(this.gen, lo, hi)
  }

  /** Uniform in [0, 1). */
  float(): number {
    return uniformFloat64(this.gen)
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float()
  }

  chance(p: number): boolean {
    return p >= 1 ? true : p <= 0 ? false : this.float() < p
  }

  /** A uint32 seed for the worker's own draws (ClassMix). */
  seed32(): number {
    return this.int(0, 0xffffffff)
  }

  permutation(n: number): number[] {
    const a = Array.from({ length: n }, (_, i) => i)
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(0, i)
      ;[a[i], a[j]] = [a[j]!, a[i]!]
    }
    return a
  }
}
