// The CPU demo: a synthetic dataset, then supervised-only and PRCL (and, asked for, pseudo-labelling
// alone) trained on the same few labels over several seeds, reported side by side (last-epoch mIoU,
// the honest number, and the best), with one HTML report of every run.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { preset } from '../config/presets.ts'
import type { ExperimentConfig } from '../config/schema.ts'
import { checkSynthOptions, generateSynthetic, SYNTH_VERSION, type SynthOptions } from '../data/synth.ts'
import { reportData, reportHtml } from '../report/html.ts'
import { Worker } from '../worker/worker.ts'
import { Experiment, type RunSummary } from './run.ts'

/** supervised-only, pseudo-labelling alone (the ablation), PRCL. */
export const DEMO_METHODS = ['supervised', 'unsup', 'prcl'] as const
export type DemoMethod = (typeof DEMO_METHODS)[number]
const PRESET: Record<DemoMethod, string> = { supervised: 'synthetic-demo-supervised', unsup: 'synthetic-demo-unsup', prcl: 'synthetic-demo' }
const LABEL: Record<DemoMethod, string> = { supervised: 'supervised', unsup: 'pseudo-labels', prcl: 'PRCL' }

export interface DemoOptions {
  out?: string
  seeds?: number[]
  /** In the order given [default: supervised, prcl]. */
  methods?: DemoMethod[]
  log?: (line: string) => void
  /** Overrides applied to both methods' configurations (tests shorten the runs). */
  adjust?: (cfg: ExperimentConfig) => void
}

export interface DemoRun { seed: number; method: DemoMethod; last_miou: number; best_miou: number; run_dir: string; minutes: number }

export interface DemoResult {
  supervised_miou: number
  prcl_miou: number
  supervised_sd: number
  prcl_sd: number
  /** Every method's last-epoch mIoU over the seeds. */
  methods: Partial<Record<DemoMethod, { mean: number; sd: number }>>
  seeds: number[]
  minutes: number
  metric: string
  runs: DemoRun[]
  data: string
  /** The HTML report of every run (prcl report). */
  report: string
}

/** The demo's dataset: 240 training images (16 labeled), 60 for validation, 5 classes, class hue
 *  windows apart (hue helps, shape and texture still matter; background colours are free). */
export const DEMO_DATA: Omit<SynthOptions, 'out'> = { seed: 0, images: 240, val: 60, size: 64, classes: 5, labeled: 16, hueSpread: 0.3, anyHue: 0 }

/** Reuses `dir` when it holds the dataset these options make, else writes it. */
async function demoData(dir: string, log: (l: string) => void) {
  const want = checkSynthOptions({ out: dir, ...DEMO_DATA })
  const manifest = join(dir, 'synth.json')
  if (existsSync(manifest)) {
    const written = JSON.parse(readFileSync(manifest, 'utf8'))
    const have = written.options ?? {}
    if (written.version === SYNTH_VERSION && Object.entries(want).every(([k, v]) => k === 'out' || have[k] === v)) return
  }
  const s = await generateSynthetic(want)
  log(`synthetic dataset: ${s.ids.train.length} train images (${s.labeled.length} labeled), ${s.ids.val.length} val, in ${dir}`)
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
const sd = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / (xs.length - 1)))

export async function runDemo(o: DemoOptions = {}): Promise<DemoResult> {
  const t0 = Date.now()
  const out = resolve(o.out ?? join('runs', 'demo'))
  const seeds = o.seeds ?? [0, 1, 2]
  const methods = o.methods ?? ['supervised', 'prcl']
  if (!methods.includes('supervised') || !methods.includes('prcl')) throw new Error(`the demo compares with supervised-only and PRCL: --methods must include both (got ${methods.join(', ')})`)
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`))
  const data = join(out, 'data')
  await demoData(data, log)
  const worker = await Worker.start({ device: 'cpu', log: 'silent' })
  const runs: DemoRun[] = []
  try {
    for (const seed of seeds) {
      for (const method of methods) {
        const cfg = preset(PRESET[method])!
        cfg.name = `demo-${method}-seed${seed}`
        cfg.seed = seed
        cfg.data.root = data
        o.adjust?.(cfg)
        const start = Date.now()
        const summary: RunSummary = await new Experiment(cfg, { runDir: join(out, cfg.name), overwrite: true, worker, progress: false, log: () => undefined }).run()
        const run: DemoRun = {
          seed, method, last_miou: summary.last?.miou ?? 0, best_miou: summary.best?.miou ?? 0,
          run_dir: summary.run_dir, minutes: (Date.now() - start) / 60_000,
        }
        runs.push(run)
        log(`seed ${seed} ${method.padEnd(10)} mIoU ${(run.last_miou * 100).toFixed(2)} (best ${(run.best_miou * 100).toFixed(2)}) in ${run.minutes.toFixed(1)} min — ${run.run_dir}`)
      }
    }
  } finally {
    await worker.close()
  }
  const of = (m: string) => runs.filter((r) => r.method === m).map((r) => r.last_miou)
  const report = join(out, 'report.html')
  writeFileSync(report, reportHtml(reportData(runs.map((r) => r.run_dir), `prcl demo: ${methods.map((m) => LABEL[m]).join(' vs ')}, seeds ${seeds.join(', ')}`)))
  log(`report: ${report}`)
  return {
    supervised_miou: mean(of('supervised')), prcl_miou: mean(of('prcl')),
    supervised_sd: sd(of('supervised')), prcl_sd: sd(of('prcl')),
    methods: Object.fromEntries(methods.map((m) => [m, { mean: mean(of(m)), sd: sd(of(m)) }])),
    seeds, minutes: (Date.now() - t0) / 60_000, metric: 'last-epoch mIoU on the synthetic val split', runs, data, report,
  }
}

export function demoTable(r: DemoResult): string {
  const pct = (x: number) => (x * 100).toFixed(2).padStart(6)
  const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(2)}`
  const last = (s: number, m: DemoMethod) => r.runs.find((x) => x.seed === s && x.method === m)!.last_miou
  if (!r.methods.unsup) {
    const rows = r.seeds.map((s) => `  ${String(s).padEnd(6)} ${pct(last(s, 'supervised'))}       ${pct(last(s, 'prcl'))}   ${signed(last(s, 'prcl') - last(s, 'supervised'))}`)
    return [
      `mIoU (%) — ${r.metric}`,
      '  seed   supervised   PRCL     PRCL − supervised',
      ...rows,
      `  mean   ${pct(r.supervised_miou)} ± ${(r.supervised_sd * 100).toFixed(2)}   ${pct(r.prcl_miou)} ± ${(r.prcl_sd * 100).toFixed(2)}   ${signed(r.prcl_miou - r.supervised_miou)}`,
      `runs in ${resolve(r.runs[0]?.run_dir ?? '', '..')}; ${r.minutes.toFixed(1)} minutes`,
      `report: ${r.report}`,
    ].join('\n')
  }
  // With the ablation: what pseudo-labels alone give, and what the contrastive term adds to them.
  const rows = r.seeds.map((s) => `  ${String(s).padEnd(6)} ${pct(last(s, 'supervised'))}       ${pct(last(s, 'unsup'))}          ${pct(last(s, 'prcl'))}   ` +
    `${signed(last(s, 'prcl') - last(s, 'supervised'))}              ${signed(last(s, 'prcl') - last(s, 'unsup'))}`)
  const m = (k: DemoMethod) => `${pct(r.methods[k]!.mean)} ± ${(r.methods[k]!.sd * 100).toFixed(2)}`
  return [
    `mIoU (%) — ${r.metric}`,
    '  seed   supervised   pseudo-labels   PRCL     PRCL − supervised   PRCL − pseudo-labels',
    ...rows,
    `  mean   ${m('supervised')}   ${m('unsup')}   ${m('prcl')}   ${signed(r.methods.prcl!.mean - r.methods.supervised!.mean)}              ${signed(r.methods.prcl!.mean - r.methods.unsup!.mean)}`,
    `runs in ${resolve(r.runs[0]?.run_dir ?? '', '..')}; ${r.minutes.toFixed(1)} minutes`,
    `report: ${r.report}`,
  ].join('\n')
}
