// `prcl report` in a real browser: headless Chromium (puppeteer-core) opens the HTML of three
// runs — two seeds of one setting and one of another — with no console error; every chart has
// drawn, every picture loaded; the comparison groups the seeds (mean ± sd); a screenshot is kept
// in test-results/.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Experiment } from '../../ts/experiment/run.ts'
import { ROOT } from '../../ts/paths.ts'
import { openReport } from '../../ts/report/browser.ts'
import { reportData, reportHtml } from '../../ts/report/html.ts'
import { summarize } from '../../ts/sweep/table.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { closeTinyRun, sharedTinyRun, tinyConfig } from '../setup/tiny-run.ts'

let worker: Worker
let dir: string
let data: string
const runs: string[] = []

beforeAll(async () => {
  ;({ worker, dir, data } = await sharedTinyRun('report'))
  for (const [name, seed, sets] of [['cmp-a', 0, []], ['cmp-a', 1, []], ['cmp-b', 0, ['loss.terms.prcl.enabled=false']]] as const) {
    const runDir = join(dir, `${name}-seed${seed}`)
    const cfg = tinyConfig(data, `${name}-seed${seed}`, [`seed=${seed}`, 'log.val_images=2', ...sets])
    await new Experiment(cfg, { runDir, worker, progress: false, log: () => undefined }).run()
    runs.push(runDir)
  }
}, 300_000)
afterAll(async () => {
  await closeTinyRun({ worker, dir })
})

describe('prcl report', () => {
  it('groups runs that differ by seed: mean ± sd of their last and best mIoU', () => {
    const r = reportData(runs)
    const last = (i: number) => JSON.parse(readFileSync(join(runs[i]!, 'summary.json'), 'utf8')).last.miou as number
    expect(r.groups.map((g) => [g.group, g.runs, g.seeds])).toEqual([['cmp-a', 2, [0, 1]], ['cmp-b', 1, [0]]])
    expect(r.groups[0]!.last_mean).toBeCloseTo((last(0) + last(1)) / 2, 12)
    expect(r.groups[0]!.last_sd).toBeCloseTo(Math.abs(last(0) - last(1)) / Math.SQRT2, 12)
    expect(r.runs[2]!.steps.terms).not.toHaveProperty('prcl')
    expect(r.runs[0]!.best!.confusion).toHaveLength(r.runs[0]!.classes.length ** 2)
    expect(r.runs.map((x) => x.evals.protocol)).toEqual(['whole images', 'whole images', 'whole images'])
  })

  it('opens in headless Chromium with no error, every chart drawn and every picture loaded', async () => {
    const out = join(ROOT, 'test-results')
    mkdirSync(out, { recursive: true })
    const html = join(out, 'report.html')
    writeFileSync(html, reportHtml(reportData(runs, 'three tiny runs')))
    const page = await openReport(html, { screenshot: join(out, 'report.png') })
    expect(page.errors).toEqual([])
    // Per run: losses, learning rates, thresholds and weights, mask ratio, pseudo-label quality
    // (the synthetic unlabeled images have ground truth), mIoU; and two overlaid.
    expect(page.charts).toHaveLength(3 * 6 + 2)
    expect(page.charts.filter((c) => c.title === 'pseudo-labels against the unlabeled ground truth')).toHaveLength(3)
    expect(page.charts.filter((c) => !c.drawn)).toEqual([])
    // Each run's mIoU chart says how the scores were measured.
    expect(page.charts.filter((c) => c.title === 'mIoU (teacher; whole images)')).toHaveLength(3)
    // Per run two val strips and two unlabeled ones.
    expect(page.pictures).toEqual({ loaded: 3 * 4, total: 3 * 4 })
    // Comparison (groups, runs), and per run the IoU-per-evaluation and confusion tables.
    expect(page.tables).toBe(2 + 3 * 2)
    expect(Object.keys(page.sections)).toEqual(['comparison'])
  }, 120_000)

  it('draws a sweep\'s paired comparison first', async () => {
    const runsOf = runs.map((dir, i) => {
      const s = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'))
      return { cell: i < 2 ? 'cmp-a' : 'cmp-b', seed: i === 1 ? 1 : 0, name: s.name, run_dir: dir, status: 'new' as const,
        last_miou: s.last.miou, best_miou: s.best.miou, best_epoch: s.best.epoch, steps: s.steps, minutes: s.wall_minutes }
    })
    const table = summarize(runsOf, ['cmp-a', 'cmp-b'])
    const html = join(ROOT, 'test-results', 'report-sweep.html')
    writeFileSync(html, reportHtml(reportData(runs, 'a sweep', { seeds: [0, 1], labels: { 'cmp-b': 'without PRCL' }, ...table })))
    const page = await openReport(html)
    expect(page.errors).toEqual([])
    expect(Object.keys(page.sections)).toEqual(['sweep', 'comparison'])
    const sweep = page.sections.sweep!
    const pct = (x: number) => (x * 100).toFixed(2)
    expect(sweep).toContain(`${pct(table.cells[0]!.last.mean)} ± ${pct(table.cells[0]!.last.sd)}`)
    // One shared seed (0): the difference, and no interval.
    const d = runsOf[2]!.last_miou - runsOf[0]!.last_miou
    expect(sweep).toMatch(new RegExp(`without PRCL − cmp-a\\s+1\\s+${d < 0 ? '−' : '\\+'}${pct(Math.abs(d))}\\s+—`))
    expect(page.tables).toBe(2 + 2 + 3 * 2)
  }, 120_000)
})
