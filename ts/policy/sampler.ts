// Which samples form each step: an endless sequence of shuffled passes over a list, with a state
// that checkpoints (pass number, position, the generator's state at the pass's start).
import { Rng } from '../rng.ts'

export interface SamplerState {
  pass: number
  pos: number
  rng: number[]
}

export class Sampler {
  private order: number[]
  private rng: Rng
  private passStart: number[]
  pass: number
  pos: number

  /** `stream`: STREAM.labeledSampler or STREAM.unlabeledSampler (ts/rng.ts). */
  constructor(readonly size: number, seed: number, stream: number, state?: SamplerState) {
    if (size < 1) throw new Error('a sampler needs at least one sample')
    this.rng = state ? Rng.fromState(state.rng) : Rng.keyed(seed, stream)
    this.passStart = this.rng.state()
    this.order = this.rng.permutation(size)
    this.pass = state?.pass ?? 0
    this.pos = state?.pos ?? 0
  }

  /** The next `n` sample indices (a batch may span two passes). */
  take(n: number): number[] {
    const out: number[] = []
    while (out.length < n) {
      if (this.pos >= this.size) {
        this.passStart = this.rng.state()
        this.order = this.rng.permutation(this.size)
        this.pass++
        this.pos = 0
      }
      out.push(this.order[this.pos++]!)
    }
    return out
  }

  state(): SamplerState {
    return { pass: this.pass, pos: this.pos, rng: this.passStart }
  }
}
