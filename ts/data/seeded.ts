// A tiny seeded PRNG for split generation (no ts/experiment/rng.ts existed when this was written).
// splitmix32 turns the user's seed into a well-mixed state, mulberry32 draws from it. Not
// cryptographic; same seed, same sequence, on every platform.

export interface Rng {
  /** Uniform float in [0, 1) with 32 random bits. */
  next(): number
  /** Uniform integer in [0, n), unbiased (rejection sampling). */
  below(n: number): number
}

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}

export function seededRng(seed: number): Rng {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${seed}`)
  // Fold the high bits in so that seeds above 2^32 do not collide with their low 32 bits.
  let state = splitmix32((seed >>> 0) ^ splitmix32(Math.floor(seed / 2 ** 32)))
  const u32 = (): number => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return (t ^ (t >>> 14)) >>> 0
  }
  return {
    next: () => u32() / 2 ** 32,
    below(n: number): number {
      if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) throw new RangeError(`below(n) needs an integer 1..2^32, got ${n}`)
      const limit = 2 ** 32 - (2 ** 32 % n)
      for (;;) {
        const x = u32()
        if (x < limit) return x % n
      }
    },
  }
}

/** Fisher–Yates shuffle of a copy. */
export function shuffled<T>(items: readonly T[], rng: Rng): T[] {
  const out = items.slice()
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.below(i + 1)
    const t = out[i]!
    out[i] = out[j]!
    out[j] = t
  }
  return out
}
