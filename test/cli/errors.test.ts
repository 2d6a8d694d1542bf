// `prcl check-data`, and CLI errors a person can act on: one message naming the file, path or
// setting, no stack trace unless --debug / PRCL_DEBUG=1.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nameSamples } from '../../ts/experiment/evaluate.ts'
import { ROOT } from '../../ts/paths.ts'
import { jpeg, PLANTED, plantedDataset, plantedSets } from '../data/planted.ts'
import { tempDir } from '../data/tree.ts'

const PRCL = join(ROOT, 'ts/cli/prcl.mjs')

function prcl(args: string[], env: Record<string, string> = {}) {
  const e: NodeJS.ProcessEnv = { ...process.env, ...env }
  if (!('PRCL_DEBUG' in env)) delete e.PRCL_DEBUG
  return spawnSync(process.execPath, [PRCL, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000, env: e })
}

const STACK = /^\s+at /m
let dir: string
let data: string
beforeAll(() => {
  dir = tempDir('cli-errors')
  data = plantedDataset(join(dir, 'data'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const sets = () => plantedSets(data).flatMap((s) => ['--set', s])

describe('prcl check-data', () => {
  it('lists every planted problem grouped with counts; exit 1', () => {
    const r = prcl(['check-data', '--config', 'synthetic-demo', ...sets(), '--threads', '2'])
    expect(r.status, r.stderr).toBe(1)
    expect(r.stdout).toMatch(/8 problems in 8 samples/)
    for (const id of Object.values(PLANTED)) expect(r.stdout).toContain(id)
    expect(r.stdout).toMatch(/^ {2}2 labels hold values outside the classes and the ignore index:$/m)
    expect(r.stdout).toMatch(/data\.skip_bad_samples=true/)
    expect(r.stderr).not.toMatch(STACK)
  })

  it('--json: one object with the counts and every finding', () => {
    const r = prcl(['check-data', '--config', 'synthetic-demo', ...sets(), '--json', '--level', 'fast', '--threads', '0'])
    expect(r.status, r.stderr).toBe(1)
    const out = JSON.parse(r.stdout)
    expect(out).toMatchObject({ ok: false, errors: 8, level: 'fast', counts: { labeled: 8, unlabeled: 5, val: 4 } })
    expect(out.findings.find((f: { id: string }) => f.id === PLANTED.valValue)).toMatchObject({ kind: 'label-values', list: 'val', line: 4 })
  })

  it('a clean dataset passes with exit 0', () => {
    const clean = join(dir, 'clean')
    plantedDataset(clean)
    for (const [which, ids] of [['labeled', 'l_a\nl_b\n\n'], ['unlabeled', 'u_a\n'], ['valid', 'v_a\nv_b\n']] as const) {
      writeFileSync(join(clean, `splits/16/0/${which}_filename.txt`), ids)
    }
    const r = prcl(['check-data', '--config', 'synthetic-demo', '--set', `data.root=${clean}`, '--set', 'model.num_classes=21'])
    expect(r.status, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toMatch(/checked 5 samples .*: no problems/)
  })
})

describe('prcl check-data: lists that cannot be read', () => {
  it('a missing split file is reported with the problems of the other lists', () => {
    const partial = join(dir, 'partial')
    plantedDataset(partial)
    rmSync(join(partial, 'splits/16/0/valid_filename.txt'))
    writeFileSync(join(partial, 'splits/16/0/unlabeled_filename.txt'), 'u_a\n\nu_b\n')
    const r = prcl(['check-data', '--config', 'synthetic-demo', '--set', `data.root=${partial}`, '--set', 'model.num_classes=21', '--json'])
    expect(r.status, r.stderr).toBe(1)
    const out = JSON.parse(r.stdout)
    expect(out.lists).toHaveLength(2)
    expect(out.lists[0]).toMatch(/unlabeled_filename\.txt:2: blank line/)
    expect(out.lists[1]).toMatch(/^data\.splits\.val: .*valid_filename\.txt does not exist/)
    expect(out.counts).toEqual({ labeled: 8 })
    expect(out.errors).toBe(5 + 2)
  })
})

describe('errors without stack traces', () => {
  it('an unexpected error: `prcl <cmd>: message`, exit 1; --debug and PRCL_DEBUG=1 add the stack', () => {
    const args = ['check-data', '--config', 'synthetic-demo', '--set', `data.root=${join(dir, 'nowhere')}`]
    const r = prcl(args)
    expect(r.status).toBe(1)
    expect(r.stderr).toBe(`prcl check-data: data.root ${join(dir, 'nowhere')} does not exist; pass --set data.root=/path/to/dataset\n`)
    const d = prcl(['--debug', ...args])
    expect(d.status).toBe(1)
    expect(d.stderr).toMatch(/^prcl check-data: data\.root .* does not exist/)
    expect(d.stderr).toMatch(STACK)
    expect(prcl([...args, '--debug']).stderr).toMatch(STACK)
    expect(prcl(args, { PRCL_DEBUG: '1' }).stderr).toMatch(STACK)
  })

  it('train with a missing data root names it and leaves no run directory', () => {
    const runDir = join(dir, 'never')
    const r = prcl(['train', '--config', 'synthetic-demo', '--set', `data.root=${join(dir, 'nowhere')}`, '--run-dir', runDir, '--json'])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^prcl train: data\.root .*nowhere does not exist/)
    expect(r.stderr).not.toMatch(STACK)
    expect(existsSync(runDir)).toBe(false)
  })

  it('train whose worker cannot start names the interpreter and leaves no run directory', () => {
    const clean = join(dir, 'clean-for-start')
    plantedDataset(clean)
    for (const [which, ids] of [['labeled', 'l_a\nl_b\n'], ['unlabeled', 'u_a\n'], ['valid', 'v_a\nv_b\n']] as const) {
      writeFileSync(join(clean, `splits/16/0/${which}_filename.txt`), ids)
    }
    const runDir = join(dir, 'never-started')
    const r = prcl(['train', '--config', 'synthetic-demo', '--set', `data.root=${clean}`, '--set', 'model.num_classes=21',
      '--set', 'worker.python=/bin/false', '--run-dir', runDir])
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr).toMatch(/^prcl train: no Python interpreter can run the worker[\s\S]*\/bin\/false/)
    expect(r.stderr).not.toMatch(STACK)
    expect(existsSync(runDir)).toBe(false)
  })

  it('eval --run on a missing directory says the directory does not exist', () => {
    const r = prcl(['eval', '--run', join(dir, 'no-such-run')])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^prcl eval: run directory .*no-such-run does not exist/)
    expect(r.stderr).not.toMatch(/manifest/)
    expect(r.stderr).not.toMatch(STACK)
  })

  it('eval --run on a run that never checkpointed says so', () => {
    const run = join(dir, 'early-run')
    mkdirSync(join(run, 'checkpoints'), { recursive: true })
    writeFileSync(join(run, 'config.json'), '{}')
    const r = prcl(['eval', '--run', run])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/has no 'best' checkpoint .* prcl train --resume/)
  })

  it('predict with a broken second image names that file before starting a worker', () => {
    const run = join(dir, 'run')
    mkdirSync(join(run, 'checkpoints', 'best'), { recursive: true })
    writeFileSync(join(run, 'config.json'), '{}')
    const good = join(dir, 'good.jpg'), bad = join(dir, 'broken.jpg')
    const j = jpeg()
    writeFileSync(good, j)
    writeFileSync(bad, j.subarray(0, j.length >> 1))
    const r = prcl(['predict', '--run', run, '--out', join(dir, 'pred'), good, bad, join(dir, 'absent.jpg')])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^prcl predict: 2 of 3 images cannot be used \(nothing was predicted\): .*broken\.jpg: JPEG is truncated.*; .*absent\.jpg does not exist/)
    expect(r.stderr).not.toMatch(/img\.\d/)
    expect(r.stderr).not.toMatch(STACK)
    expect(existsSync(join(dir, 'pred'))).toBe(false)
  })
})

describe('worker errors about request tensors name the files', () => {
  it('img.<i> / lbl.<i> become the image and label paths; the error keeps its class', () => {
    class InvalidArgument extends Error {}
    const refs = [{ image: '/d/a.jpg', label: '/d/a.png' }, { image: '/d/b.jpg', label: '/d/b.png' }]
    const e = nameSamples(new InvalidArgument('img.1: cannot decode image: image file is truncated'), refs)
    expect(e).toBeInstanceOf(InvalidArgument)
    expect(e.message).toBe('image /d/b.jpg: cannot decode image: image file is truncated')
    expect(nameSamples(new Error('lbl.0 is [3, 4] but its image is [4, 4]'), refs).message).toBe('label /d/a.png is [3, 4] but its image is [4, 4]')
    expect(nameSamples(new Error('img.7: out of range'), refs).message).toBe('img.7: out of range')
    expect(nameSamples(new Error('worker lost'), refs).message).toBe('worker lost')
  })
})
