// The CPU demo: scenes of real handwritten digits (ts/data/digits.ts), a trunk pretrained on other
// digits (ts/sweep/digits.ts), then a sweep of supervised-only against PRCL (and, asked for,
// pseudo-labelling alone) on the same few labels over several seeds, reported as one table with the
// paired differences and their 95 % intervals, and one HTML report of every run. Its settings were
// chosen on another draw of the data and other seeds (bench/results/learning.md); it reports on
// this one without change.
import { join, resolve } from 'node:path'
import type { DigitsOptions } from '../data/digits.ts'
import { DIGITS_LABELED } from '../config/presets.ts'
import { METHODS, methodsAxis, type Method } from './cells.ts'
import { DIGITS_PRESET, DIGITS_TARGET, prepareDigits, splitSets } from './digits.ts'
import { runSweep, type SweepResult } from './run.ts'
import { sweepText } from './table.ts'

export interface DemoOptions {
  out?: string
  seeds?: number[]
  /** In the order given [default: supervised, prcl]; must include supervised. */
  methods?: Method[]
  /** Runs at once [default 1]. */
  parallel?: number
  log?: (line: string) => void
  /** Overrides applied to every run after the preset, the pretraining's too (tests shorten the runs). */
  set?: string[]
  /** Pretrain the trunk here instead of starting from the shipped one (ts/sweep/digits.ts). */
  pretrain?: boolean
  /** Another draw of the scenes (the development draw: other seeds) or smaller scenes. */
  target?: Omit<DigitsOptions, 'out'>
  source?: Omit<DigitsOptions, 'out'>
  signal?: AbortSignal
}

export interface DemoResult extends SweepResult {
  /** The dataset's directory. */
  data: string
  /** The metric the table reports, in words. */
  metric: string
}

export async function runDemo(o: DemoOptions = {}): Promise<DemoResult> {
  const out = resolve(o.out ?? join('runs', 'demo'))
  const seeds = o.seeds ?? [0, 1, 2]
  const methods = o.methods ?? ['supervised', 'prcl']
  if (!methods.includes('supervised')) throw new RangeError(`the demo compares with supervised-only: --methods must include supervised (got ${methods.join(', ')})`)
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`))
  const target = o.target ?? DIGITS_TARGET
  const recipe = await prepareDigits(out, { log, signal: o.signal, target, source: o.source, set: o.set, trunk: o.pretrain ? 'train' : 'shipped' })
  const labels = Object.fromEntries(methods.map((m) => [m, METHODS[m].label]))
  const r = await runSweep({
    config: DIGITS_PRESET, set: [...recipe.set, ...splitSets(DIGITS_LABELED, target.seed ?? 0), ...(o.set ?? [])],
    axes: [methodsAxis(methods)], seeds, out, parallel: o.parallel, labels, log, signal: o.signal,
    title: `prcl demo: ${methods.map((m) => METHODS[m].label).join(' vs ')} on handwritten-digit scenes, ${DIGITS_LABELED} labeled, seeds ${seeds.join(', ')}`,
  })
  return { ...r, data: recipe.data, metric: `mIoU of the EMA teacher on the 200 validation scenes, ${DIGITS_LABELED} labeled scenes` }
}

export function demoTable(r: DemoResult): string {
  const labels = Object.fromEntries(Object.entries(METHODS).map(([k, m]) => [k, m.label]))
  return [
    sweepText(r, labels),
    `runs in ${r.out}; ${r.minutes.toFixed(1)} minutes`,
    ...(r.report ? [`report: ${r.report}`] : []),
  ].join('\n')
}
