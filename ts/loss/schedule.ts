// Schedules: a value as a pure function of progress (step or epoch), evaluated in TypeScript
// only; each train_step carries the resolved numbers.
import Type, { type Static } from 'typebox'

const Num = Type.Number()
export const Schedule = Type.Union([
  Type.Object({ kind: Type.Literal('const'), value: Num }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('linear'), from: Num, to: Num, start: Type.Optional(Num), end: Num }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('cosine'), from: Num, to: Num, start: Type.Optional(Num), end: Num }, { additionalProperties: false }),
  Type.Object({
    kind: Type.Literal('piecewise'),
    // Objects, not tuples: typebox emits draft-07 tuples that 2020-12 validators reject.
    points: Type.Array(Type.Object({ at: Num, value: Num }, { additionalProperties: false }), { minItems: 1, maxItems: 1000 }),
  }, { additionalProperties: false }),
  // PRCL's Gaussian ramp-down (method spec §8.1): max·exp(mult·((t−begin)/(end−begin))²).
  Type.Object({
    kind: Type.Literal('rampdown'), begin: Num, end: Num, max: Num, min: Num, mult: Num,
  }, { additionalProperties: false }),
  // Poly decay (§8.2): max(base·(1 − t/end)^power, floor).
  Type.Object({ kind: Type.Literal('poly'), base: Num, end: Num, power: Num, floor: Num }, { additionalProperties: false }),
])
export type Schedule = Static<typeof Schedule>

/** A schedule, or a plain number meaning a constant. */
export const ScheduleOrNumber = Type.Union([Num, Schedule])
export type ScheduleOrNumber = Static<typeof ScheduleOrNumber>

/** The schedule's value at progress t (a step or an epoch, as the caller decides). */
export function evaluate(s: ScheduleOrNumber, t: number): number {
  if (typeof s === 'number') return s
  switch (s.kind) {
    case 'const':
      return s.value
    case 'linear':
    case 'cosine': {
      const start = s.start ?? 0
      const span = s.end - start
      const x = span <= 0 ? 1 : Math.min(1, Math.max(0, (t - start) / span))
      const f = s.kind === 'linear' ? x : (1 - Math.cos(Math.PI * x)) / 2
      return s.from + (s.to - s.from) * f
    }
    case 'piecewise': {
      // Linear between points, constant beyond the ends.
      const pts = [...s.points].sort((a, b) => a.at - b.at)
      if (t <= pts[0]!.at) return pts[0]!.value
      for (let i = 1; i < pts.length; i++) {
        const a = pts[i - 1]!
        const b = pts[i]!
        if (t <= b.at) return b.at === a.at ? b.value : a.value + ((b.value - a.value) * (t - a.at)) / (b.at - a.at)
      }
      return pts[pts.length - 1]!.value
    }
    case 'rampdown': {
      if (t < s.begin) return 0
      if (t >= s.end) return s.min
      const x = (t - s.begin) / (s.end - s.begin)
      return Math.max(s.min, s.max * Math.exp(s.mult * x * x))
    }
    case 'poly':
      return Math.max(s.base * Math.max(0, 1 - t / s.end) ** s.power, s.floor)
  }
}

/** Where a schedule's extremes can be, over progress [0, range.end): every kind is monotone
 *  between its breakpoints, so the ends, the breakpoints and a grid (whole epochs when schedules
 *  advance per epoch) cover every value a run will use. */
export function scheduleTimes(s: ScheduleOrNumber, range: { end: number; stepwise: boolean }): number[] {
  if (typeof s === 'number') return [0]
  const last = range.stepwise ? range.end : Math.max(0, range.end - 1)
  const grid = 2000
  const step = range.stepwise || last > grid ? last / grid : 1
  const times = new Set<number>([0, last])
  for (let t = 0; t <= last; t += step) times.add(range.stepwise ? t : Math.floor(t))
  const marks = s.kind === 'piecewise' ? s.points.map((p) => p.at)
    : s.kind === 'rampdown' ? [s.begin, s.end]
    : s.kind === 'poly' ? [s.end]
    : s.kind === 'const' ? [] : [s.start ?? 0, s.end]
  for (const m of marks) {
    for (const t of [m, range.stepwise ? m : Math.floor(m), range.stepwise ? m : Math.ceil(m)]) if (t >= 0 && t <= last) times.add(t)
  }
  return [...times].sort((a, b) => a - b)
}
