// prcl weights export: a trained run's trunk written as a backbone file, byte for byte the
// checkpoint's tensors, which another run then starts from (the worker checks every key and shape).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exportBackbone } from '../../ts/experiment/export.ts'
import { Experiment } from '../../ts/experiment/run.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { closeTinyRun, sharedTinyRun, tinyConfig } from '../setup/tiny-run.ts'

let worker: Worker
let dir: string
let data: string
let source: string
beforeAll(async () => {
  ;({ worker, dir, data } = await sharedTinyRun('export'))
  source = join(dir, 'source')
  await new Experiment(tinyConfig(data, 'source', ['sampling.epochs=1']), { runDir: source, worker, progress: false, log: () => undefined }).run()
}, 120_000)
afterAll(async () => { await closeTinyRun({ worker, dir }) })

/** A safetensors file: its header and, per tensor, its bytes. */
function readSafetensors(path: string): { meta: Record<string, string>; tensors: Map<string, { dtype: string; shape: number[]; bytes: Buffer }> } {
  const file = readFileSync(path)
  const n = Number(file.readBigUInt64LE(0))
  const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8'))
  const tensors = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>()
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') continue
    const t = v as { dtype: string; shape: number[]; data_offsets: [number, number] }
    tensors.set(k, { dtype: t.dtype, shape: t.shape, bytes: file.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]) })
  }
  return { meta: header.__metadata__ ?? {}, tensors }
}

describe('prcl weights export', () => {
  it('writes the teacher\'s trunk, byte for byte, and another run starts from it', async () => {
    const out = join(dir, 'trunk.safetensors')
    const r = await exportBackbone({ run: source, out, checkpoint: 'latest' })
    expect(r).toMatchObject({ model: 'teacher', backbone: 'resnet18', width: 0.25, step: 4 })
    const trunk = readSafetensors(out)
    expect(trunk.meta).toMatchObject({ format: 'prcl-backbone/1', model: 'teacher', backbone: 'resnet18', step: '4' })
    expect([...trunk.tensors.keys()]).toContain('layer4.1.bn2.running_var')
    expect([...trunk.tensors.keys()].every((k) => /^(conv1|bn1|layer[1-4])\./.test(k))).toBe(true)
    // The same bytes as the checkpoint's tensors of teacher.backbone.*.
    const state = readSafetensors(join(source, 'checkpoints', 'latest', 'worker.safetensors'))
    const net = JSON.parse(state.meta.meta!).__dict__.find(([k]: [string]) => k === 'net')[1].__dict__ as Array<[string, { __tensor__: number }]>
    const index = new Map(net.map(([k, v]) => [k, v.__tensor__]))
    for (const [k, t] of trunk.tensors) expect(t.bytes.equals(state.tensors.get(String(index.get(`teacher.backbone.${k}`)))!.bytes)).toBe(true)
    // The student's trunk differs from the teacher's (an EMA of it).
    const student = readSafetensors((await exportBackbone({ run: source, out: join(dir, 's.safetensors'), checkpoint: 'latest', model: 'student' })).out)
    expect(student.tensors.get('conv1.weight')!.bytes.equals(trunk.tensors.get('conv1.weight')!.bytes)).toBe(false)

    // A run that starts from it trains (the worker checks every key and shape against its trunk).
    const next = await new Experiment(tinyConfig(data, 'next', ['sampling.epochs=1', `model.pretrained=${out}`]), {
      runDir: join(dir, 'next'), worker, progress: false, log: () => undefined,
    }).run()
    expect(next.steps).toBe(4)
    // At another width the trunk does not fit, and the error says which keys.
    await expect(new Experiment(tinyConfig(data, 'wide', ['sampling.epochs=1', 'model.width=0.5', `model.pretrained=${out}`]), {
      runDir: join(dir, 'wide'), worker, progress: false, log: () => undefined,
    }).run()).rejects.toThrow(/does not match the resnet18 trunk \(width 0\.5\)/)
  }, 120_000)

  it('names what is missing', async () => {
    await expect(exportBackbone({ run: join(dir, 'nowhere'), out: join(dir, 'x.safetensors') })).rejects.toThrow(/not a complete checkpoint/)
    let err = ''
    try {
      execFileSync(process.execPath, ['ts/cli/prcl.mjs', 'weights', 'export', '--run', source], { encoding: 'utf8', stdio: 'pipe' })
    } catch (e) { err = String((e as { stderr: string }).stderr) }
    expect(err).toMatch(/export needs --run DIR and --out FILE/)
  })
})
