// The progress line: without a terminal one plain line every log.progress_s seconds (and the last
// step's); the ETA counts the steps left at the time per step and the evaluations left at the time
// per evaluation.
import { describe, expect, it, vi } from 'vitest'
import type { StepEvent } from '../../ts/experiment/metrics-log.ts'
import { Progress } from '../../ts/experiment/progress.ts'

const ev = (step: number) => ({ step, epoch: 0, losses: { sup: { value: 1.5, weight: 1 } } }) as unknown as StepEvent

describe('the progress line', () => {
  it('without a terminal: the first step, then one line per period, and the last step', () => {
    vi.useFakeTimers({ now: 0 })
    const lines: string[] = []
    const p = new Progress({ total: 10, evalSteps: [5, 10], tty: false, everyMs: 60_000, write: (s) => lines.push(s) })
    for (let s = 1; s <= 10; s++) {
      vi.advanceTimersByTime(20_000)
      p.step(ev(s))
    }
    vi.useRealTimers()
    // Printed at 20 s (first), 80 s (step 4), 140 s (step 7), 200 s (the last step).
    expect(lines.map((l) => /^step (\d+)\/10 /.exec(l)?.[1])).toEqual(['1', '4', '7', '10'])
    expect(lines.every((l) => l.endsWith('\n') && !l.includes('\r'))).toBe(true)
    expect(lines[1]).toMatch(/^step 4\/10 epoch 0 sup 1\.500 · 0\.1 it\/s · ETA /)
  })

  it('the ETA adds the evaluations left at their measured time', () => {
    vi.useFakeTimers({ now: 0 })
    const p = new Progress({ total: 10, evalSteps: [5, 10], tty: false, everyMs: 0, write: () => undefined })
    for (let s = 1; s <= 5; s++) {
      vi.advanceTimersByTime(1000)
      p.step(ev(s))
    }
    vi.advanceTimersByTime(30_000)
    p.evaluated(5)
    vi.useRealTimers()
    // 5 steps left at 1 s, and the evaluation after step 10 at 30 s.
    expect(p.etaSeconds(5)).toBe(5 + 30)
    expect(p.etaSeconds(10)).toBe(30)
  })
})
