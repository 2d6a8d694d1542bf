/// <reference lib="dom" />
// The report page's script: runs in the browser, inlined by html.ts as `(drawReport)(data)` after
// uPlot. Self-contained (no imports; only the global uPlot), so its source can be inlined as is.
import type { ReportData } from './html.ts'

declare const uPlot: new (opts: object, data: Array<Array<number | null>>, el: HTMLElement) => unknown

export function drawReport(data: ReportData): void {
  const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22']
  const el = (tag: string, attrs: Record<string, string> = {}, text?: string): HTMLElement => {
    const e = document.createElement(tag)
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v)
    if (text !== undefined) e.textContent = text
    return e
  }
  const pct = (x: number | null | undefined) => (typeof x === 'number' && Number.isFinite(x) ? (x * 100).toFixed(2) : '—')
  /** A table of text cells under a header row. */
  const textTable = (headers: string[], rows: string[][]): HTMLElement => {
    const t = el('table', { class: 'compare' })
    for (const [tag, cells] of [['th', headers] as const, ...rows.map((r) => ['td', r] as const)]) {
      const tr = el('tr')
      for (const v of cells) tr.appendChild(el(tag, {}, v))
      t.appendChild(tr)
    }
    return t
  }
  const root = document.getElementById('report')!
  const width = Math.min(900, Math.max(480, root.clientWidth - 20))

  /** A line chart: x values, then named series (null = gap). */
  const chart = (parent: HTMLElement, title: string, x: number[], series: Array<{ label: string; values: Array<number | null> }>, opts: { log?: boolean } = {}) => {
    const box = el('div', { class: 'chart', 'data-chart': title })
    parent.appendChild(box)
    new uPlot({
      title, width, height: 260,
      scales: { x: { time: false }, y: opts.log ? { distr: 3 } : {} },
      axes: [{ label: 'step' }, {}],
      series: [{ label: 'step' }, ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true }))],
    }, [x, ...series.map((s) => s.values)], box)
  }

  /** A table whose cells are coloured by value in [0, 1] (white → blue). */
  const heatTable = (parent: HTMLElement, caption: string, cols: string[], rows: Array<{ label: string; values: Array<number | null>; text?: Array<string> }>) => {
    const t = el('table', { class: 'heat' })
    t.appendChild(el('caption', {}, caption))
    const head = el('tr')
    head.appendChild(el('th'))
    for (const c of cols) head.appendChild(el('th', {}, c))
    t.appendChild(head)
    for (const r of rows) {
      const tr = el('tr')
      tr.appendChild(el('th', {}, r.label))
      r.values.forEach((v, i) => {
        const td = el('td', {}, r.text?.[i] ?? (v === null ? '—' : (v * 100).toFixed(1)))
        if (v !== null) {
          const a = Math.max(0, Math.min(1, v))
          td.style.background = `rgba(31, 119, 180, ${(a * 0.85).toFixed(3)})`
          if (a > 0.55) td.style.color = '#fff'
        }
        tr.appendChild(td)
      })
      t.appendChild(tr)
    }
    parent.appendChild(t)
  }

  document.title = data.title
  root.appendChild(el('h1', {}, data.title))
  root.appendChild(el('p', { class: 'meta' }, `${data.runs.length} run${data.runs.length === 1 ? '' : 's'} · made ${data.generated}`))

  if (data.sweep) {
    // The sweep's claim first: each cell over its seeds, then the paired differences.
    const sw = data.sweep
    const name = (c: string) => sw.labels[c] ?? c
    const signed = (x: number) => (Number.isFinite(x) ? `${x < 0 ? '−' : '+'}${Math.abs(x * 100).toFixed(2)}` : '—')
    const ci = (d: { ci95: [number, number] | null }) => (d.ci95 ? `[${signed(d.ci95[0])}, ${signed(d.ci95[1])}]` : '—')
    const sec = el('section', { id: 'sweep' })
    sec.appendChild(el('h2', {}, 'Paired comparison'))
    sec.appendChild(el('p', { class: 'meta' }, `mIoU (%) over seeds ${sw.seeds.join(', ')}; differences are taken seed by seed over the seeds both cells ran, with the 95 % confidence interval of the mean difference (Student t, n − 1 degrees of freedom).`))
    sec.appendChild(textTable(['cell', 'seeds', 'last mIoU (mean ± sd)', 'best mIoU (mean ± sd)'], sw.cells.map((c) => [
      name(c.cell), String(c.seeds.length), `${pct(c.last.mean)} ± ${pct(c.last.sd)}`, `${pct(c.best.mean)} ± ${pct(c.best.sd)}`,
    ])))
    if (sw.pairs.length) {
      sec.appendChild(textTable(['difference', 'n', 'last: mean', 'last: 95 % CI', 'best: mean', 'best: 95 % CI'], sw.pairs.map((p) => [
        `${name(p.b)} − ${name(p.a)}`, String(p.seeds.length), signed(p.last.mean), ci(p.last), signed(p.best.mean), ci(p.best),
      ])))
    }
    root.appendChild(sec)
  }

  if (data.runs.length > 1) {
    const sec = el('section', { id: 'comparison' })
    sec.appendChild(el('h2', {}, 'Comparison'))
    sec.appendChild(textTable(['group', 'runs', 'seeds', 'last mIoU (mean ± sd)', 'best mIoU (mean ± sd)'], data.groups.map((g) => [
      g.group, String(g.runs), g.seeds.join(', '), `${pct(g.last_mean)} ± ${pct(g.last_sd)}`, `${pct(g.best_mean)} ± ${pct(g.best_sd)}`,
    ])))
    sec.appendChild(textTable(['run', 'steps', 'last mIoU', 'best mIoU (step)', 'recoveries'], data.runs.map((r) => [
      r.name, String(r.steps.step.length ? r.steps.step[r.steps.step.length - 1] : 0), pct(r.last?.miou),
      r.best ? `${pct(r.best.miou)} (${r.best.step})` : '—', String(r.recoveries),
    ])))
    // Overlaid curves: every run's mIoU and total loss on one step axis.
    const xs = [...new Set(data.runs.flatMap((r) => r.evals.step))].sort((a, b) => a - b)
    chart(sec, 'mIoU over steps, every run', xs, data.runs.map((r) => ({
      label: r.name, values: xs.map((x) => { const i = r.evals.step.indexOf(x); return i < 0 ? null : r.evals.miou[i]! }),
    })))
    const xl = [...new Set(data.runs.flatMap((r) => r.steps.step))].sort((a, b) => a - b)
    chart(sec, 'total loss, every run', xl, data.runs.map((r) => ({
      label: r.name, values: xl.map((x) => { const i = r.steps.step.indexOf(x); return i < 0 ? null : r.steps.total[i]! }),
    })))
    root.appendChild(sec)
  }

  for (const r of data.runs) {
    const sec = el('section', { class: 'run' })
    sec.appendChild(el('h2', {}, r.name))
    sec.appendChild(el('p', { class: 'meta' }, `${r.dir} · ${r.steps.step.length} steps logged · last mIoU ${pct(r.last?.miou)} · best ${pct(r.best?.miou)}` +
      `${r.recoveries ? ` · ${r.recoveries} recover${r.recoveries === 1 ? 'y' : 'ies'}` : ''}${r.wall_minutes !== null ? ` · ${r.wall_minutes.toFixed(1)} min` : ''}`))
    if (r.steps.step.length) {
      chart(sec, 'losses', r.steps.step, [{ label: 'total', values: r.steps.total }, ...Object.entries(r.steps.terms).map(([n, v]) => ({ label: n, values: v }))])
      chart(sec, 'learning rates', r.steps.step, [{ label: 'backbone', values: r.steps.lr }, { label: 'head', values: r.steps.head_lr }])
      chart(sec, 'thresholds and weights', r.steps.step, [
        { label: 'weak threshold', values: r.steps.weak },
        ...Object.entries(r.steps.schedules).map(([n, v]) => ({ label: n, values: v })),
      ])
      chart(sec, 'pseudo-labels: share of unlabeled pixels above the threshold', r.steps.step, [{ label: 'mask ratio', values: r.steps.mask_ratio }])
      if (r.steps.quality) {
        chart(sec, 'pseudo-labels against the unlabeled ground truth', r.steps.step, Object.entries(r.steps.quality).map(([n, v]) => ({ label: n, values: v })))
      }
    }
    if (r.evals.step.length) {
      chart(sec, `mIoU (${r.evals.model}${r.evals.protocol ? `; ${r.evals.protocol}` : ''})`, r.evals.step, [{ label: 'mIoU', values: r.evals.miou }])
      heatTable(sec, 'IoU per class at each evaluation (%)', r.classes, r.evals.step.map((s, i) => ({ label: `step ${s}`, values: r.evals.iou[i]! })))
    }
    if (r.best) {
      const n = r.classes.length
      const rows = r.classes.map((c, g) => {
        const row = r.best!.confusion.slice(g * n, g * n + n)
        const sum = row.reduce((a, b) => a + b, 0)
        return { label: c, values: row.map((v) => (sum ? v / sum : null)), text: row.map((v) => (sum ? `${((v / sum) * 100).toFixed(1)}` : '—')) }
      })
      heatTable(sec, `confusion of the best evaluation (step ${r.best.step}, mIoU ${pct(r.best.miou)}): ground truth (rows) → prediction (columns), % of the row`, r.classes, rows)
    }
    if (r.pictures) {
      const p = r.pictures
      const box = el('div', { class: 'pictures' })
      box.appendChild(el('h3', {}, `validation images at step ${p.step}: ${p.panels.join(' | ')} (σ² from 0 to ${p.var_max.toPrecision(3)})`))
      const figures = (list: Array<{ src: string; image: string }>) => {
        for (const im of list) {
          const fig = el('figure')
          const img = el('img', { src: im.src, alt: im.image }) as HTMLImageElement
          // Small strips drawn larger (pixelated), never wider than the page.
          img.onload = () => { img.style.width = `${Math.min(width, img.naturalWidth * Math.max(1, Math.floor(480 / img.naturalWidth)))}px` }
          fig.appendChild(img)
          fig.appendChild(el('figcaption', {}, im.image))
          box.appendChild(fig)
        }
      }
      figures(p.images)
      if (p.unlabeled.length) {
        box.appendChild(el('h3', {}, `unlabeled images through the unlabeled branch at step ${p.step}: ${p.unlabeled_panels.join(' | ')} (confidence 0 to 1, σ² 0 to ${p.unlabeled_var_max.toPrecision(3)})`))
        figures(p.unlabeled)
      }
      sec.appendChild(box)
    }
    root.appendChild(sec)
  }
  ;(window as unknown as { reportReady: boolean }).reportReady = true
}
