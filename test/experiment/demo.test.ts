// The demo's plumbing on a shortened schedule: dataset written once and reused, both methods run
// per seed, the supervised baseline sends no unlabeled images, the table and the JSON fields.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { DEMO_DATA, demoTable, runDemo } from '../../ts/experiment/demo.ts'

const out = mkdtempSync(join(tmpdir(), 'prcl-demo-'))
afterAll(() => rmSync(out, { recursive: true, force: true }))

const short = (cfg: ExperimentConfig) => {
  cfg.sampling = { batch_size: 2, epochs: 1, epoch: { kind: 'fixed', steps: 3 } }
  cfg.data.labeled.crop = [32, 32]
  cfg.data.unlabeled.crop = [32, 32]
}

describe('the demo', () => {
  it('trains both methods per seed, reports them, and reuses its dataset', async () => {
    const lines: string[] = []
    const r = await runDemo({ out, seeds: [0, 1], log: (l) => lines.push(l), adjust: short })
    expect(r.seeds).toEqual([0, 1])
    expect(r.runs.map((x) => `${x.seed}:${x.method}`)).toEqual(['0:supervised', '0:prcl', '1:supervised', '1:prcl'])
    for (const x of r.runs) expect(x.last_miou).toBeGreaterThan(0)
    expect(r.supervised_miou).toBeCloseTo((r.runs[0]!.last_miou + r.runs[2]!.last_miou) / 2, 12)
    expect(r.prcl_miou).toBeCloseTo((r.runs[1]!.last_miou + r.runs[3]!.last_miou) / 2, 12)
    expect(r.minutes).toBeGreaterThan(0)
    const manifest = JSON.parse(readFileSync(join(r.data, 'synth.json'), 'utf8'))
    expect(manifest.options).toMatchObject(DEMO_DATA)
    expect(lines[0]).toMatch(/synthetic dataset: 240 train images \(16 labeled\), 60 val/)
    const table = demoTable(r)
    expect(table).toMatch(/seed\s+supervised\s+PRCL\s+PRCL − supervised/)
    expect(table.split('\n').filter((l) => /^\s+[01]\s/.test(l))).toHaveLength(2)

    // The supervised baseline's steps never ran the teacher on unlabeled images; PRCL's did.
    const phase = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
      .filter((l) => l.type === 'step').map((l) => l.time_ms.teacher_augment_u)
    expect(phase(r.runs[0]!.run_dir).every((t: number) => t === 0)).toBe(true)
    expect(phase(r.runs[1]!.run_dir).every((t: number) => t > 0)).toBe(true)

    // One HTML report of every run.
    const html = readFileSync(r.report, 'utf8')
    for (const x of r.runs) expect(html).toContain(`demo-${x.method}-seed${x.seed}`)
    expect(lines).toContain(`report: ${r.report}`)
    expect(table).toContain(`report: ${r.report}`)

    // The ablation: pseudo-labels alone (no PRCL term, but the teacher labels unlabeled images).
    const written = statSync(join(r.data, 'synth.json')).mtimeMs
    const again = await runDemo({ out, seeds: [2], methods: ['supervised', 'unsup', 'prcl'], log: (l) => lines.push(l), adjust: short })
    expect(statSync(join(again.data, 'synth.json')).mtimeMs).toBe(written)
    expect(lines.filter((l) => l.startsWith('synthetic dataset'))).toHaveLength(1)
    expect(again.runs.map((x) => x.method)).toEqual(['supervised', 'unsup', 'prcl'])
    const unsup = again.runs[1]!
    const terms = readFileSync(join(unsup.run_dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).find((l) => l.type === 'step').losses
    expect(Object.keys(terms)).toEqual(['sup', 'unsup'])
    expect(phase(unsup.run_dir).every((t: number) => t > 0)).toBe(true)
    expect(Object.keys(again.methods)).toEqual(['supervised', 'unsup', 'prcl'])
    expect(demoTable(again)).toMatch(/seed\s+supervised\s+pseudo-labels\s+PRCL\s+PRCL − supervised\s+PRCL − pseudo-labels/)
  }, 300_000)
})
