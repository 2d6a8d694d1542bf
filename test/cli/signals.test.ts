// Ctrl-C during `prcl train`: the first SIGINT lets the steps in flight finish, writes a
// checkpoint, prints the resume command and exits 130 with no worker left; the run resumes from
// that checkpoint. A second signal stops at once, also with no worker left.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateSynthetic } from '../../ts/data/synth.ts'
import { ROOT } from '../../ts/paths.ts'

const PRCL = join(ROOT, 'ts', 'cli', 'prcl.mjs')
let dir: string
let data: string

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'prcl-signals-'))
  data = join(dir, 'data')
  await generateSynthetic({ out: data, seed: 0, images: 24, val: 6, size: 40, labeled: 8 })
}, 120_000)
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const sets = () => [
  `data.root=${data}`, 'data.splits.labeled=splits/8/0/labeled_filename.txt', 'data.splits.unlabeled=splits/8/0/unlabeled_filename.txt',
  'data.splits.val=splits/8/0/valid_filename.txt', 'data.labeled.crop=[32,32]', 'data.unlabeled.crop=[32,32]',
  'sampling.batch_size=2', 'sampling.epochs=50', 'sampling.epoch={"kind":"fixed","steps":4}', 'checkpoint.every_steps=1000',
  'worker.device=cpu', 'name=signals',
].flatMap((s) => ['--set', s])

/** Steps in metrics.jsonl. */
const stepsIn = (runDir: string): number[] => {
  const f = join(runDir, 'metrics.jsonl')
  if (!existsSync(f)) return []
  return readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'step').map((e) => e.step)
}

/** Workers whose --parent-pid is `pid` (spawned workers exit when their driver does). */
const workersOf = (pid: number): string[] =>
  spawnSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes('prcl_worker') && l.includes(`--parent-pid ${pid} `))

async function trainUntil(runDir: string, steps: number) {
  const p = spawn(process.execPath, [PRCL, 'train', '--config', 'synthetic-demo', ...sets(), '--run-dir', runDir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  p.stderr!.on('data', (b: Buffer) => { err += b.toString() })
  p.stdout!.resume()
  const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)))
  while (stepsIn(runDir).length < steps) {
    if (p.exitCode !== null) throw new Error(`train exited early (${p.exitCode}): ${err}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  return { p, exited, err: () => err }
}

describe('signals during prcl train', () => {
  it('a first SIGINT finishes the steps in flight, checkpoints and exits 130; the run resumes there', async () => {
    const runDir = join(dir, 'once')
    const { p, exited, err } = await trainUntil(runDir, 2)
    p.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(err()).toMatch(/SIGINT: finishing the steps in flight and writing a checkpoint/)
    expect(err()).toMatch(new RegExp(`resume with: prcl train --resume ${runDir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`))
    expect(err()).not.toMatch(/\n\s+at /) // no stack trace
    const done = stepsIn(runDir)
    const saved = JSON.parse(readFileSync(join(runDir, 'checkpoints', 'latest', 'driver.json'), 'utf8'))
    expect(saved.step).toBe(done.at(-1))
    expect(workersOf(p.pid!)).toEqual([])
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'))
    expect(summary.stopped).toBe('SIGINT')

    const again = spawnSync(process.execPath, [PRCL, 'train', '--resume', runDir, '--stop-after', '2', '--json'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 })
    expect(again.status, again.stderr).toBe(0)
    expect(JSON.parse(again.stdout.trim().split('\n').at(-1)!).steps).toBe(saved.step + 2)
  }, 300_000)

  it('a second signal stops at once, with no worker left', async () => {
    const runDir = join(dir, 'twice')
    const { p, exited } = await trainUntil(runDir, 1)
    p.kill('SIGTERM')
    p.kill('SIGTERM')
    expect(await exited).toBe(143)
    await new Promise((r) => setTimeout(r, 1000))
    expect(workersOf(p.pid!)).toEqual([])
  }, 300_000)
})
