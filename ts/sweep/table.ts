// A sweep's result as one table: each cell's last- and best-epoch mIoU as mean ± sd over its
// seeds, and paired differences between cells over the seeds they share, with 95 % intervals
// (Student t; ts/sweep/stats.ts).
import { pairedDifference, spread, type PairedDifference, type Spread } from './stats.ts'

export interface SweepRunResult {
  cell: string
  seed: number
  name: string
  run_dir: string
  /** kept: finished before this call; resumed: finished now from a checkpoint; new. */
  status: 'kept' | 'resumed' | 'new'
  last_miou: number
  best_miou: number
  best_epoch: number | null
  steps: number
  minutes: number
}

export interface CellStats {
  cell: string
  seeds: number[]
  last: Spread
  best: Spread
}

export interface PairStats {
  /** b − a. */
  a: string
  b: string
  seeds: number[]
  last: PairedDifference
  best: PairedDifference
}

export interface SweepTable { cells: CellStats[]; pairs: PairStats[] }

/** Which pairs are compared: each cell with the baseline, if named; else, up to 4 cells, each
 *  with each earlier one; else each with the first. */
export function comparedPairs(cells: readonly string[], baseline?: string): Array<[string, string]> {
  if (baseline !== undefined) return cells.filter((c) => c !== baseline).map((c) => [baseline, c])
  if (cells.length <= 4) return cells.flatMap((b, j) => cells.slice(0, j).map((a) => [a, b] as [string, string]))
  return cells.slice(1).map((c) => [cells[0]!, c])
}

export function summarize(runs: readonly SweepRunResult[], cells: readonly string[], baseline?: string): SweepTable {
  const of = (cell: string, key: 'last_miou' | 'best_miou') =>
    new Map(runs.filter((r) => r.cell === cell && Number.isFinite(r[key])).map((r) => [r.seed, r[key]]))
  return {
    cells: cells.map((cell) => ({
      cell, seeds: [...of(cell, 'last_miou').keys()].sort((x, y) => x - y),
      last: spread([...of(cell, 'last_miou').values()]), best: spread([...of(cell, 'best_miou').values()]),
    })),
    pairs: comparedPairs(cells, baseline).map(([a, b]) => {
      const last = pairedDifference(of(a, 'last_miou'), of(b, 'last_miou'))
      const best = pairedDifference(of(a, 'best_miou'), of(b, 'best_miou'))
      const { keys, ...l } = last
      const { keys: _k, ...bst } = best
      return { a, b, seeds: keys, last: l, best: bst }
    }),
  }
}

const pct = (x: number) => (Number.isFinite(x) ? (x * 100).toFixed(2) : '—')
const signed = (x: number) => (Number.isFinite(x) ? `${x < 0 ? '−' : '+'}${Math.abs(x * 100).toFixed(2)}` : '—')
const meanSd = (s: Spread) => (s.n ? `${pct(s.mean)} ± ${pct(s.sd)}` : '—')
const interval = (d: PairedDifference) => (d.ci95 ? `[${signed(d.ci95[0])}, ${signed(d.ci95[1])}]` : '(one pair: no interval)')

/** The table as text: per-seed last-epoch mIoU, each cell's mean ± sd, the paired differences. */
export function sweepText(t: SweepTable & { runs: readonly SweepRunResult[]; seeds: readonly number[] }, labels: Record<string, string> = {}): string {
  const name = (c: string) => labels[c] ?? c
  const w = Math.max(12, ...t.cells.map((c) => name(c.cell).length)) + 2
  const lines: string[] = ['mIoU (%) of each run\'s evaluated model on the val split: the last epoch (best epoch in the last column)']
  lines.push(`  ${'seed'.padEnd(6)}${t.cells.map((c) => name(c.cell).padStart(w)).join('')}`)
  for (const seed of t.seeds) {
    const cells = t.cells.map((c) => {
      const r = t.runs.find((x) => x.cell === c.cell && x.seed === seed)
      return (r ? pct(r.last_miou) : '—').padStart(w)
    })
    lines.push(`  ${String(seed).padEnd(6)}${cells.join('')}`)
  }
  lines.push(`  ${'last'.padEnd(6)}${t.cells.map((c) => meanSd(c.last).padStart(w)).join('')}   mean ± sd`)
  lines.push(`  ${'best'.padEnd(6)}${t.cells.map((c) => meanSd(c.best).padStart(w)).join('')}   mean ± sd`)
  if (t.pairs.length) {
    lines.push('paired differences over the shared seeds: mean [95 % CI, Student t]')
    const pw = Math.max(...t.pairs.map((p) => `${name(p.b)} − ${name(p.a)}`.length)) + 2
    for (const p of t.pairs) {
      lines.push(`  ${`${name(p.b)} − ${name(p.a)}`.padEnd(pw)}last ${signed(p.last.mean)} ${interval(p.last)}   best ${signed(p.best.mean)} ${interval(p.best)}   (n = ${p.seeds.length})`)
    }
  }
  return lines.join('\n')
}
