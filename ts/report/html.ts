// `prcl report`: one self-contained HTML file (uPlot and the data inlined, works offline) for one
// or more runs: loss curves per term, learning rates, thresholds and loss weights, the pseudo-label
// mask ratio, mIoU over time, per-class IoU over evaluations, the best evaluation's confusion
// matrix and the newest picture strips; for several runs a comparison — runs that differ only by
// seed (`<name>-seed<k>`) grouped, mean ± sd — and overlaid curves.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { drawReport } from './page.ts'
import { readRun, type RunView } from './read-run.ts'
import { describeProtocol } from '../experiment/protocol.ts'
import { bestEval } from '../experiment/metrics-log.ts'

export interface ReportRun {
  name: string
  dir: string
  classes: string[]
  steps: {
    step: number[]; total: number[]; terms: Record<string, number[]>; lr: number[]; head_lr: number[]; weak: number[]
    /** Loss weights and numeric params that change over the run (constant ones are left out). */
    schedules: Record<string, number[]>
    mask_ratio: number[]
    /** Pseudo-labels against the unlabeled ground truth (log.pseudo_quality), series by name; null without it. */
    quality: Record<string, Array<number | null>> | null
  }
  /** `protocol`: how the scores were measured, in words (older runs: the protocol's kind). */
  evals: { model: string; protocol: string; step: number[]; miou: number[]; iou: Array<Array<number | null>> }
  last: { step: number; miou: number } | null
  best: { step: number; miou: number; confusion: number[] } | null
  pictures: RunView['pictures']
  recoveries: number
  wall_minutes: number | null
}

export interface ReportGroup { group: string; runs: number; seeds: Array<number | string>; last_mean: number; last_sd: number; best_mean: number; best_sd: number }

interface MeanSd { n: number; mean: number; sd: number }
interface Difference extends MeanSd { ci95: [number, number] | null }

/** A sweep's paired comparison (made by ts/sweep/table.ts), drawn at the top of the page. */
export interface ReportSweep {
  seeds: number[]
  /** Display names of cells (a method's name), where they differ from the cell's. */
  labels: Record<string, string>
  cells: Array<{ cell: string; seeds: number[]; last: MeanSd; best: MeanSd }>
  /** b − a over the seeds both ran. */
  pairs: Array<{ a: string; b: string; seeds: number[]; last: Difference; best: Difference }>
}

export interface ReportData { title: string; generated: string; runs: ReportRun[]; groups: ReportGroup[]; sweep?: ReportSweep }

export function reportData(dirs: string[], title?: string, sweep?: ReportSweep): ReportData {
  if (dirs.length === 0) throw new Error('a report needs at least one run directory')
  const views = dirs.map(readRun)
  const runs = views.map(toReportRun)
  return {
    title: title ?? (runs.length === 1 ? `prcl report: ${runs[0]!.name}` : `prcl report: ${runs.length} runs`),
    generated: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
    runs, groups: groupsOf(views, runs), ...(sweep ? { sweep } : {}),
  }
}

/** The report as one HTML document. */
export function reportHtml(data: ReportData): string {
  const require = createRequire(import.meta.url)
  const uplotJs = readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8')
  const uplotCss = readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8')
  // `</` may not appear inside a script element; JSON escapes it harmlessly.
  const json = JSON.stringify(data).replace(/</g, '\\u003c')
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(data.title)}</title>
<style>${uplotCss}
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #222; background: #fff; }
#report { max-width: 960px; margin: 0 auto; padding: 12px 20px 40px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
.meta { color: #666; } .chart { margin: 12px 0; }
table { border-collapse: collapse; margin: 12px 0; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; } th { background: #f6f6f6; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
.pictures figure { margin: 8px 0; } .pictures img { image-rendering: pixelated; max-width: 100%; min-height: 64px; }
.pictures figcaption { color: #666; font-size: 12px; }
</style>
</head>
<body>
<main id="report"></main>
<script>${uplotJs}</script>
<script>
var __name = function (f) { return f };
(${drawReport.toString()})(${json});
</script>
</body>
</html>
`
}

function toReportRun(v: RunView): ReportRun {
  const steps = v.steps
  const terms = [...new Set(steps.flatMap((s) => Object.keys(s.losses)))]
  // Loss weights and numeric params, by name; only those that change over the run are shown.
  const params = new Map<string, [term: string, name: string]>()
  for (const s of steps) {
    for (const [term, ps] of Object.entries(s.params ?? {})) {
      for (const [name, value] of Object.entries(ps ?? {})) if (typeof value === 'number') params.set(`${term}.${name}`, [term, name])
    }
  }
  const series: Record<string, number[]> = {
    ...Object.fromEntries(terms.map((t) => [`weight ${t}`, steps.map((s) => s.losses[t]?.weight ?? NaN)])),
    ...Object.fromEntries([...params].map(([key, [term, name]]) => [key, steps.map((s) => {
      const p = s.params?.[term]?.[name]
      return typeof p === 'number' ? p : NaN
    })])),
  }
  const schedules = Object.fromEntries(Object.entries(series).filter(([, vals]) => new Set(vals).size > 1))
  const evals = v.evals
  const best = bestEval(evals)
  const last = evals.at(-1) ?? null
  return {
    name: v.name, dir: v.dir, classes: evals[0]?.classes ?? [],
    steps: {
      step: steps.map((s) => s.step), total: steps.map((s) => s.total),
      terms: Object.fromEntries(terms.map((t) => [t, steps.map((s) => s.losses[t]?.value ?? NaN)])),
      lr: steps.map((s) => s.lr), head_lr: steps.map((s) => s.head_lr), weak: steps.map((s) => s.weak_threshold),
      schedules, mask_ratio: steps.map((s) => s.stats.mask_ratio), quality: qualitySeries(steps),
    },
    evals: {
      model: evals[0]?.model ?? 'teacher',
      protocol: evals[0]?.eval_protocol ? describeProtocol(evals[0].eval_protocol) : evals[0]?.protocol ?? '',
      step: evals.map((e) => e.step), miou: evals.map((e) => e.miou), iou: evals.map((e) => e.iou),
    },
    last: last && { step: last.step, miou: last.miou },
    best: best && { step: best.step, miou: best.miou, confusion: best.confusion ?? [] },
    pictures: v.pictures, recoveries: v.recoveries.length, wall_minutes: v.summary?.wall_minutes ?? null,
  }
}

function qualitySeries(steps: RunView['steps']): ReportRun['steps']['quality'] {
  const first = steps.find((s) => s.pseudo_quality)?.pseudo_quality
  if (!first) return null
  const out: Record<string, Array<number | null>> = {
    accuracy: steps.map((s) => s.pseudo_quality?.accuracy ?? null),
    mIoU: steps.map((s) => s.pseudo_quality?.miou ?? null),
  }
  first.thresholds.forEach((t, i) => {
    out[`coverage ≥ ${t}`] = steps.map((s) => s.pseudo_quality?.coverage[i] ?? null)
    out[`accuracy ≥ ${t}`] = steps.map((s) => s.pseudo_quality?.accuracy_above[i] ?? null)
  })
  return out
}

function groupsOf(views: RunView[], runs: ReportRun[]): ReportGroup[] {
  const order = [...new Set(views.map((v) => v.group))]
  return order.map((group) => {
    const idx = views.map((v, i) => (v.group === group ? i : -1)).filter((i) => i >= 0)
    const last = idx.map((i) => runs[i]!.last?.miou).filter((x): x is number => typeof x === 'number')
    const best = idx.map((i) => runs[i]!.best?.miou).filter((x): x is number => typeof x === 'number')
    return {
      group, runs: idx.length, seeds: idx.map((i) => views[i]!.seed ?? views[i]!.name),
      last_mean: mean(last), last_sd: sd(last), best_mean: mean(best), best_sd: sd(best),
    }
  })
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN)
const sd = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / (xs.length - 1)))

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)
}
