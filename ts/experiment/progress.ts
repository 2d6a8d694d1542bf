// The progress line of a run on stderr: on a terminal one line redrawn each step; elsewhere (a log
// file, a batch job) one plain line every `everyMs`. The ETA counts the steps left at the measured
// time per training step and the evaluations left at the measured time per evaluation.
import type { StepEvent } from './metrics-log.ts'

export class Progress {
  private trainMs = 0
  private trainSteps = 0
  private evalMs = 0
  private evals = 0
  private last = Date.now()
  private printed = 0
  private drew = false
  private evaluatedAt = 0

  /** `evalSteps`: the steps after which the run evaluates (to count those left). */
  constructor(private readonly o: { total: number; evalSteps: readonly number[]; tty: boolean; everyMs: number; write: (s: string) => void }) {}

  step(ev: StepEvent): void {
    const now = Date.now()
    this.trainMs += now - this.last
    this.trainSteps++
    this.last = now
    if (this.o.tty) {
      this.o.write(`\r${this.line(ev)}   `)
      this.drew = true
    } else if (this.o.everyMs > 0 && (this.printed === 0 || now - this.printed >= this.o.everyMs || ev.step === this.o.total)) {
      this.o.write(`${this.line(ev)}\n`)
      this.printed = now
    }
  }

  /** The evaluation after `step` took place just now, since the step before it. */
  evaluated(step: number): void {
    this.evaluatedAt = step
    const now = Date.now()
    this.evalMs += now - this.last
    this.evals++
    this.last = now
  }

  /** Seconds left: the steps left at the time per step, the evaluations left at the time per
   *  evaluation (none measured yet: counted as one step's time each). */
  etaSeconds(step: number): number {
    const perStep = this.trainSteps ? this.trainMs / this.trainSteps : 0
    const perEval = this.evals ? this.evalMs / this.evals : perStep
    const evalsLeft = this.o.evalSteps.filter((s) => s >= step && s > this.evaluatedAt).length
    return ((this.o.total - step) * perStep + evalsLeft * perEval) / 1000
  }

  done(): void {
    if (this.drew) this.o.write('\n')
  }

  private line(ev: StepEvent): string {
    const rate = this.trainMs > 0 ? (this.trainSteps * 1000) / this.trainMs : 0
    const eta = this.etaSeconds(ev.step)
    const mm = (s: number) => `${Math.floor(s / 3600) ? `${Math.floor(s / 3600)}:` : ''}${String(Math.floor((s % 3600) / 60)).padStart(Math.floor(s / 3600) ? 2 : 1, '0')}:${String(Math.floor(s % 60)).padStart(2, '0')}`
    const losses = Object.entries(ev.losses).map(([k, v]) => `${k} ${v.value.toFixed(3)}`).join(' ')
    const width = 24
    const filled = Math.round((ev.step / this.o.total) * width)
    const bar = this.o.tty ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : ''
    const evals = this.evals ? ` · eval ${(this.evalMs / this.evals / 1000).toFixed(1)} s` : ''
    return `${bar}step ${ev.step}/${this.o.total} epoch ${ev.epoch} ${losses} · ${rate.toFixed(1)} it/s${evals} · ETA ${mm(eta)}`
  }
}
