// The demo's plumbing on a shortened schedule and fewer scenes: the digit scenes and the pretrained
// trunk made once and reused, the methods run per seed as a sweep from that trunk, the supervised
// baseline sends no unlabeled images, the table, the paired differences and the JSON fields.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { demoTable, runDemo, type DemoOptions } from '../../ts/sweep/demo.ts'
import { DIGITS_PRESET, DIGITS_SOURCE, DIGITS_TARGET, SHIPPED_TRUNK } from '../../ts/sweep/digits.ts'
import { sha256File } from '../../ts/experiment/checkpoint.ts'
import { loadConfig } from '../../ts/config/load.ts'

const out = mkdtempSync(join(tmpdir(), 'prcl-demo-'))
afterAll(() => rmSync(out, { recursive: true, force: true }))

const short: DemoOptions = {
  set: ['sampling.batch_size=2', 'sampling.epochs=1', 'sampling.epoch={"kind":"fixed","steps":3}', 'data.labeled.crop=[32,32]', 'data.unlabeled.crop=[32,32]'],
  target: { ...DIGITS_TARGET, images: 200, val: 40 }, source: { ...DIGITS_SOURCE, images: 120, val: 12, labeled: 100 },
}

describe('the demo', () => {
  it('trains every method per seed as a sweep, reports the paired differences, and reuses its dataset', async () => {
    const lines: string[] = []
    const r = await runDemo({ out, seeds: [0, 1], log: (l) => lines.push(l), ...short })
    expect(r.seeds).toEqual([0, 1])
    expect(r.runs.map((x) => x.name)).toEqual(['supervised-seed0', 'supervised-seed1', 'prcl-seed0', 'prcl-seed1'])
    for (const x of r.runs) expect(x.last_miou).toBeGreaterThan(0)
    expect(r.cells.map((c) => [c.cell, c.seeds])).toEqual([['supervised', [0, 1]], ['prcl', [0, 1]]])
    expect(r.cells[0]!.last.mean).toBeCloseTo((r.runs[0]!.last_miou + r.runs[1]!.last_miou) / 2, 12)
    expect(r.pairs.map((p) => `${p.b} − ${p.a}`)).toEqual(['prcl − supervised'])
    expect(r.minutes).toBeGreaterThan(0)
    // Real handwriting: the dataset the preset reads, credited in its manifest.
    const manifest = JSON.parse(readFileSync(join(r.data, 'synth.json'), 'utf8'))
    expect(manifest.generator).toBe('prcl-digits')
    expect(manifest.data).toMatch(/MNIST digits \(LeCun, Cortes, Burges\)/)
    for (const f of Object.values(loadConfig(DIGITS_PRESET).data.splits)) expect(existsSync(join(r.data, f))).toBe(true)
    expect(lines[0]).toMatch(/^digit scenes \(0, 1, 2, 3\): 200 train scenes \(labeled splits 20, 40, 80, 160\), 40 val/)
    expect(lines[1]).toMatch(/^digit scenes \(4, 5, 6, 7, 8, 9\): 120 train scenes/)
    // Every compared run starts from the trunk the pretraining run exported.
    const trunk = join(out, 'pretrain', 'trunk.safetensors')
    expect(existsSync(trunk)).toBe(true)
    for (const x of r.runs) expect(JSON.parse(readFileSync(join(x.run_dir, 'config.json'), 'utf8')).model.pretrained).toBe(trunk)
    const table = demoTable(r)
    expect(table).toMatch(/seed\s+supervised-only\s+PRCL/)
    expect(table.split('\n').filter((l) => /^\s+[01]\s/.test(l))).toHaveLength(2)
    expect(table).toMatch(/PRCL − supervised-only\s+last [+−]\d+\.\d\d \[/)

    // The supervised baseline's steps never ran the teacher on unlabeled images; PRCL's did.
    const phase = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
      .filter((l) => l.type === 'step').map((l) => l.time_ms.teacher_augment_u)
    expect(phase(r.runs[0]!.run_dir).every((t: number) => t === 0)).toBe(true)
    expect(phase(r.runs[2]!.run_dir).every((t: number) => t > 0)).toBe(true)

    // One HTML report of every run, the comparison on top.
    const html = readFileSync(r.report!, 'utf8')
    for (const x of r.runs) expect(html).toContain(x.run_dir)
    expect(table).toContain(`report: ${r.report}`)

    // The ablation: pseudo-labels alone (no PRCL term, but the teacher labels unlabeled images).
    const written = statSync(join(r.data, 'synth.json')).mtimeMs
    const again = await runDemo({ out, seeds: [2], methods: ['supervised', 'unsup', 'prcl'], log: (l) => lines.push(l), ...short })
    expect(statSync(join(again.data, 'synth.json')).mtimeMs).toBe(written)
    expect(lines.filter((l) => l.startsWith('digit scenes'))).toHaveLength(2)
    expect(lines.filter((l) => l.includes('[pretrain-seed0] starting'))).toHaveLength(1)
    expect(again.runs.map((x) => x.cell)).toEqual(['supervised', 'unsup', 'prcl'])
    const unsup = again.runs[1]!
    const terms = readFileSync(join(unsup.run_dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).find((l) => l.type === 'step').losses
    expect(Object.keys(terms)).toEqual(['sup', 'unsup'])
    expect(phase(unsup.run_dir).every((t: number) => t > 0)).toBe(true)
    // Three cells: every later one against every earlier one.
    expect(again.pairs.map((p) => `${p.b} − ${p.a}`)).toEqual(['unsup − supervised', 'prcl − supervised', 'prcl − unsup'])
    expect(demoTable(again)).toMatch(/seed\s+supervised-only\s+pseudo-labels\s+PRCL/)
  }, 300_000)

  it('ships the trunk of the default draw: the sha256 it pins, the tensors a pretraining run exports', async () => {
    expect(await sha256File(SHIPPED_TRUNK.path)).toBe(SHIPPED_TRUNK.sha256)
    // The test's own pretraining ran above on fewer scenes: same network, so the same names and shapes.
    expect(tensors(SHIPPED_TRUNK.path)).toEqual(tensors(join(out, 'pretrain', 'trunk.safetensors')))
  })
})

/** A safetensors file's tensor names with dtype and shape, from its header. */
function tensors(file: string): Record<string, string> {
  const bytes = readFileSync(file)
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>
  return Object.fromEntries(Object.entries(header).filter(([k]) => k !== '__metadata__').map(([k, v]) => [k, `${v.dtype} ${v.shape.join('×')}`]))
}
