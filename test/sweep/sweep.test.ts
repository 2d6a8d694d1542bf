// prcl sweep against real workers on the tiny synthetic run: cells × seeds as run directories,
// an interrupted sweep resumed without rerunning what finished (and the resumed run equal to an
// uninterrupted one), a failing run that leaves the others alone, a run directory of another
// configuration refused, the printed commands, the table and the report.
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../ts/config/load.ts'
import { methodsAxis, gridAxis } from '../../ts/sweep/cells.ts'
import { planSweep, runSweep, sweepCommands, type SweepOptions } from '../../ts/sweep/run.ts'
import { sweepText } from '../../ts/sweep/table.ts'
import { tinyDataset, tinySets } from '../setup/tiny-run.ts'

let dir = ''
let data = ''
beforeAll(async () => { ({ dir, data } = await tinyDataset('sweep')) })
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const metrics = (run: string) => readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
const stepLosses = (run: string) => metrics(run).filter((l) => l.type === 'step').map((l) => [l.step, l.total])
const options = (out: string, extra: Partial<SweepOptions> = {}): SweepOptions => ({
  config: 'synthetic-demo', set: [...tinySets(data), 'log.tensorboard=false', 'log.val_images=0'],
  axes: [methodsAxis(['supervised', 'prcl'])], seeds: [0, 1], out, log: () => undefined, ...extra,
})

describe('prcl sweep', () => {
  it('resumes an interrupted sweep: finished runs kept, the interrupted one continued exactly, the rest started', async () => {
    const out = join(dir, 'a')
    // Stop the sweep once its third run (prcl, seed 0) has done 5 of its 8 steps.
    const abort = new AbortController()
    const first = await runSweep(options(out, {
      signal: abort.signal,
      onRun: (r, exp) => { if (r.name === 'prcl-seed0') exp.on('step', (e) => { if (e.step === 5) abort.abort('test') }) },
    }))
    expect(first.stopped).toBe('test')
    expect(first.runs.map((r) => `${r.name}:${r.status}`)).toEqual(['supervised-seed0:new', 'supervised-seed1:new'])
    expect(existsSync(join(out, 'prcl-seed1'))).toBe(false)
    const interrupted = join(out, 'prcl-seed0')
    const cut = metrics(interrupted).filter((l) => l.type === 'step').length
    expect(cut).toBeGreaterThanOrEqual(5)
    expect(cut).toBeLessThan(8)
    expect(planSweep(options(out)).map((r) => r.state)).toEqual(['finished', 'finished', 'interrupted', 'new'])
    const kept = statSync(join(out, 'supervised-seed0', 'summary.json')).mtimeMs

    const again = await runSweep(options(out))
    expect(again.stopped).toBeNull()
    expect(again.failed).toEqual([])
    expect(again.runs.map((r) => `${r.name}:${r.status}`)).toEqual(['supervised-seed0:kept', 'supervised-seed1:kept', 'prcl-seed0:resumed', 'prcl-seed1:new'])
    expect(statSync(join(out, 'supervised-seed0', 'summary.json')).mtimeMs).toBe(kept)
    // Every step once, and the same losses as the same run made without interruption.
    const resumed = stepLosses(interrupted)
    expect(resumed.map(([s]) => s)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    const whole = await runSweep(options(join(dir, 'whole'), { axes: [methodsAxis(['prcl'])], seeds: [0] }))
    expect(resumed).toEqual(stepLosses(whole.runs[0]!.run_dir))
    expect(again.runs[2]!.last_miou).toBe(whole.runs[0]!.last_miou)

    // A third call runs nothing.
    const third = await runSweep(options(out))
    expect(third.runs.every((r) => r.status === 'kept')).toBe(true)
    expect(sweepCommands(options(out))).toEqual([])

    // The table: per seed, each cell's mean ± sd, and the paired difference with its interval.
    expect(again.cells.map((c) => c.cell)).toEqual(['supervised', 'prcl'])
    const sup = again.runs.filter((r) => r.cell === 'supervised').map((r) => r.last_miou)
    const prcl = again.runs.filter((r) => r.cell === 'prcl').map((r) => r.last_miou)
    expect(again.cells[0]!.last.mean).toBeCloseTo((sup[0]! + sup[1]!) / 2, 12)
    const d = [prcl[0]! - sup[0]!, prcl[1]! - sup[1]!]
    const pair = again.pairs[0]!
    expect([pair.a, pair.b, pair.seeds]).toEqual(['supervised', 'prcl', [0, 1]])
    expect(pair.last.mean).toBeCloseTo((d[0]! + d[1]!) / 2, 12)
    // Two pairs: t(0.975, 1 df) = 12.706; the half-width is t·sd/√2 = 12.706·|d0 − d1|/2.
    const half = 12.7062047 * Math.abs(d[0]! - d[1]!) / 2
    expect(pair.last.ci95![1] - pair.last.mean).toBeCloseTo(half, 6)
    const text = sweepText(again, { supervised: 'supervised-only' })
    expect(text).toMatch(/seed\s+supervised-only\s+prcl/)
    expect(text).toMatch(/prcl − supervised-only\s+last [+−]\d+\.\d\d \[[+−]\d+\.\d\d, [+−]\d+\.\d\d\]/)
    const saved = JSON.parse(readFileSync(join(out, 'sweep.json'), 'utf8'))
    expect(saved.pairs[0].last.ci95).toEqual(pair.last.ci95)
    // The report: every run, the paired comparison on top.
    const html = readFileSync(again.report!, 'utf8')
    for (const r of again.runs) expect(html).toContain(r.run_dir)
    expect(html).toContain('"sweep":{"seeds":[0,1]')
  }, 300_000)

  it('goes on past a run that fails, and names it', async () => {
    const out = join(dir, 'b')
    const r = await runSweep(options(out, {
      axes: [gridAxis(`data.root=${JSON.stringify([data, join(dir, 'no-such-data')])}`)], seeds: [0],
      set: [...tinySets(data), 'sampling.epochs=1', 'log.tensorboard=false'],
    }))
    expect(r.runs.map((x) => x.cell)).toEqual(['root-' + data.replace(/[^A-Za-z0-9_.-]/g, '.')])
    expect(r.failed).toHaveLength(1)
    expect(r.failed[0]!.error).toContain('no-such-data')
  }, 120_000)

  it('prints one prcl train command per run left, and refuses a run directory of another configuration', async () => {
    const out = join(dir, 'c')
    const o = options(out, { axes: [methodsAxis(['supervised', 'unsup']), gridAxis('loss.terms.sup.weight=[1,0.5]')], seeds: [3] })
    const lines = sweepCommands(o)
    expect(lines).toHaveLength(4)
    expect(lines[0]).toMatch(/^prcl train --config synthetic-demo .*--set seed=3 --set name=supervised_weight-1-seed3 --run-dir \S+\/supervised_weight-1-seed3$/)
    // Each command's --set list gives the planned configuration.
    const plan = planSweep(o)
    const sets = [...lines[3]!.matchAll(/--set (?:'([^']*)'|(\S+))/g)].map((m) => m[1] ?? m[2]!)
    expect(loadConfig('synthetic-demo', sets)).toEqual(plan[3]!.config)
    expect(plan[3]!.config.loss.terms.find((t) => t.name === 'sup')!.weight).toBe(0.5)
    expect(plan[3]!.config.loss.terms.find((t) => t.name === 'prcl')!.enabled).toBe(false)

    // A run directory made by another configuration is named, before anything runs.
    await runSweep(options(out, { axes: [methodsAxis(['supervised'])], seeds: [3], set: [...tinySets(data), 'sampling.epochs=1'] }))
    expect(() => planSweep(options(out, { axes: [methodsAxis(['supervised'])], seeds: [3] })))
      .toThrow(/supervised-seed3 holds a run of another configuration \(sampling\.epochs: 1 → 2\)/)
  }, 120_000)

  it('names bad axes', () => {
    expect(() => methodsAxis(['supervised', 'fixmatch'])).toThrow(/unknown fixmatch; known: supervised, unsup, prcl/)
    expect(() => gridAxis('loss.terms.unsup.params.threshold=0.9')).toThrow(/must be a JSON array/)
    expect(() => gridAxis('threshold')).toThrow(/expected PATH=\[v1,v2,\.\.\.\]/)
    expect(() => gridAxis('a.b=[{"x":1}]')).toThrow(/a number, string or boolean/)
    expect(() => planSweep(options(join(dir, 'd'), { axes: [gridAxis('model.widht=[1]')] }))).toThrow(/cell widht-1, seed 0: [^]*no setting 'widht'/)
    expect(() => planSweep(options(join(dir, 'd'), { seeds: [1, 1] }))).toThrow(/names a seed twice/)
    expect(() => planSweep(options(join(dir, 'd'), { baseline: 'nope' }))).toThrow(/--baseline nope: no such cell; the cells are supervised, prcl/)
  })
})
