// `prcl bench learning`: the small-scale analogue of the paper's table — supervised-only,
// pseudo-labels alone and PRCL on the handwritten-digit scenes (ts/sweep/digits.ts) at several
// labeled-set sizes, over several seeds, with the paired difference of each semi-supervised method
// against supervised-only at each size and its 95 % interval. About an hour on a 2-core CPU at the
// defaults. Run again, it resumes (a sweep). With --save every run is a line of
// bench/results/learning.jsonl and the table in bench/results/learning.md is made from that file.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { ROOT } from '../paths.ts'
import { METHODS, methodsAxis, type Method } from '../sweep/cells.ts'
import { DIGITS_PRESET, DIGITS_TARGET, prepareDigits, splitSets } from '../sweep/digits.ts'
import { runSweep } from '../sweep/run.ts'
import { pairedDifference, spread } from '../sweep/stats.ts'
import { machine } from './wire.ts'

export interface LearningOptions {
  seeds?: number[]
  labeled?: number[]
  methods?: Method[]
  out?: string
  parallel?: number
  log?: (line: string) => void
  signal?: AbortSignal
}

/** One run, as bench/results/learning.jsonl holds it. */
export interface LearningRun {
  method: Method
  labeled: number
  seed: number
  last_miou: number
  best_miou: number
  best_epoch: number | null
  steps: number
  minutes: number
  /** The draw of the scenes (their generator seed) and of the trunk's pretraining. */
  draw: number
  date: string
  machine: string
}

export const LEARNING_DEFAULTS = { seeds: [0, 1, 2, 3, 4], labeled: [20, 40, 160], methods: ['supervised', 'unsup', 'prcl'] as Method[] }

export async function learningBench(o: LearningOptions = {}): Promise<{ runs: LearningRun[]; minutes: number; out: string; stopped: string | null; failed: number }> {
  const seeds = o.seeds ?? LEARNING_DEFAULTS.seeds
  const labeled = o.labeled ?? LEARNING_DEFAULTS.labeled
  const methods = o.methods ?? LEARNING_DEFAULTS.methods
  const out = resolve(o.out ?? join('runs', 'bench-learning'))
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`))
  const avail = (DIGITS_TARGET.labeled as number[])
  const missing = labeled.filter((n) => !avail.includes(n))
  if (missing.length) throw new RangeError(`--labeled: the scenes hold labeled splits of ${avail.join(', ')} scenes, not ${missing.join(', ')}`)
  const draw = DIGITS_TARGET.seed ?? 0
  const recipe = await prepareDigits(out, { log, signal: o.signal })
  const r = await runSweep({
    config: DIGITS_PRESET, set: recipe.set, seeds, out, parallel: o.parallel, log, signal: o.signal,
    axes: [{ name: 'labeled', values: labeled.map((n) => ({ label: `l${n}`, set: splitSets(n, draw) })) }, methodsAxis(methods)],
    title: `prcl bench learning: ${methods.map((m) => METHODS[m].label).join(', ')} at ${labeled.join(', ')} labeled scenes, seeds ${seeds.join(', ')}`,
  })
  const date = new Date().toISOString().slice(0, 10)
  const m = machine() as { cpu: string; cores: number; node: string }
  const runs = r.runs.map((x) => {
    const [l, method] = x.cell.split('_') as [string, Method]
    return {
      method, labeled: Number(l.slice(1)), seed: x.seed, last_miou: x.last_miou, best_miou: x.best_miou, best_epoch: x.best_epoch,
      steps: x.steps, minutes: x.minutes, draw, date, machine: `${m.cpu} (${m.cores} cores), node ${m.node}`,
    }
  })
  return { runs, minutes: r.minutes, out, stopped: r.stopped, failed: r.failed.length }
}

const pct = (x: number) => (x * 100).toFixed(2)
const signed = (x: number) => `${x < 0 ? '−' : '+'}${Math.abs(x * 100).toFixed(2)}`

/** The benchmark's table (markdown) from its runs: per size, each method's last and best mIoU as
 *  mean ± sd, and each semi-supervised method's paired difference from supervised-only. */
export function learningTable(runs: readonly LearningRun[]): string {
  const sizes = [...new Set(runs.map((r) => r.labeled))].sort((a, b) => a - b)
  const methods = (Object.keys(METHODS) as Method[]).filter((m) => runs.some((r) => r.method === m))
  const lines = [
    '| labeled scenes | method | seeds | last mIoU | best mIoU | last − supervised [95 % CI] | best − supervised [95 % CI] |',
    '|---|---|---|---|---|---|---|',
  ]
  for (const n of sizes) {
    const of = (m: Method, k: 'last_miou' | 'best_miou') => new Map(runs.filter((r) => r.labeled === n && r.method === m).map((r) => [r.seed, r[k]]))
    for (const m of methods) {
      const last = spread([...of(m, 'last_miou').values()])
      if (last.n === 0) continue
      const best = spread([...of(m, 'best_miou').values()])
      const diff = (k: 'last_miou' | 'best_miou') => {
        if (m === 'supervised') return '—'
        const d = pairedDifference(of('supervised', k), of(m, k))
        return d.n === 0 ? '—' : `${signed(d.mean)} ${d.ci95 ? `[${signed(d.ci95[0])}, ${signed(d.ci95[1])}]` : ''}`.trim()
      }
      lines.push(`| ${n} | ${METHODS[m].label} | ${last.n} | ${pct(last.mean)} ± ${pct(last.sd)} | ${pct(best.mean)} ± ${pct(best.sd)} | ${diff('last_miou')} | ${diff('best_miou')} |`)
    }
  }
  return lines.join('\n')
}

const JSONL = () => join(ROOT, 'bench', 'results', 'learning.jsonl')
const MD = () => join(ROOT, 'bench', 'results', 'learning.md')
const START = '<!-- learning table: made by `prcl bench learning --save` from learning.jsonl; do not edit by hand -->'
const END = '<!-- end of the learning table -->'

/** Adds the runs to learning.jsonl (a run already there — same method, size, seed and draw — is
 *  replaced) and rewrites the table in learning.md from the whole file. */
export function saveLearning(runs: readonly LearningRun[]): { jsonl: string; md: string } {
  const key = (r: LearningRun) => `${r.method}/${r.labeled}/${r.seed}/${r.draw}`
  const fresh = new Set(runs.map(key))
  const kept = existsSync(JSONL()) ? readFileSync(JSONL(), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as LearningRun).filter((r) => !fresh.has(key(r))) : []
  const all = [...kept, ...runs]
  writeFileSync(JSONL(), all.map((r) => JSON.stringify(r)).join('\n') + '\n')
  const block = [START, '', `${all.length} runs; ${[...new Set(all.map((r) => `${r.date}, ${r.machine}`))].join('; ')}.`, '', learningTable(all), '', END].join('\n')
  const md = existsSync(MD()) ? readFileSync(MD(), 'utf8') : '# Learning benchmark\n\n'
  const i = md.indexOf(START)
  const j = md.indexOf(END)
  writeFileSync(MD(), i >= 0 && j > i ? md.slice(0, i) + block + md.slice(j + END.length) : `${md.trimEnd()}\n\n${block}\n`)
  return { jsonl: JSONL(), md: MD() }
}
