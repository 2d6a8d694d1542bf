// Summaries over seeds and paired comparisons: what a sweep's table and the learning benchmark
// report. A paired difference takes the seeds two cells share, subtracts seed by seed, and gives
// the mean difference with its 95 % confidence interval from Student's t with n − 1 degrees of
// freedom (the seeds' runs are the pairs: same labeled split, same data order up to the method).
// jstat is CommonJS: its one export comes through the default import under plain Node and tsx.
import jstat from 'jstat'

const { jStat } = jstat

export interface Spread {
  n: number
  mean: number
  /** Sample standard deviation (n − 1); 0 for one value. */
  sd: number
}

export interface PairedDifference extends Spread {
  /** 95 % confidence interval of the mean difference; null below 2 pairs. */
  ci95: [number, number] | null
  /** The t statistic and its two-sided p-value; null below 2 pairs or when every difference is equal. */
  t: number | null
  p: number | null
}

export function spread(xs: readonly number[]): Spread {
  const n = xs.length
  if (n === 0) return { n: 0, mean: NaN, sd: NaN }
  const mean = xs.reduce((a, b) => a + b, 0) / n
  const sd = n < 2 ? 0 : Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1))
  return { n, mean, sd }
}

/** The paired difference b − a over the keys both have. */
export function pairedDifference(a: ReadonlyMap<number, number>, b: ReadonlyMap<number, number>): PairedDifference & { keys: number[] } {
  const keys = [...a.keys()].filter((k) => b.has(k)).sort((x, y) => x - y)
  const d = keys.map((k) => b.get(k)! - a.get(k)!)
  const s = spread(d)
  if (s.n < 2) return { ...s, keys, ci95: null, t: null, p: null }
  const se = s.sd / Math.sqrt(s.n)
  const half = jStat.studentt.inv(0.975, s.n - 1) * se
  const t = se > 0 ? s.mean / se : null
  const p = t === null ? null : 2 * (1 - jStat.studentt.cdf(Math.abs(t), s.n - 1))
  return { ...s, keys, ci95: [s.mean - half, s.mean + half], t, p }
}
