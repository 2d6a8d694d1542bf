// Checkpoints that survive kills and corruption, and resumes that continue the same run or are
// refused naming why: a corrupt `latest` with a valid `best`, leftovers of an interrupted save,
// kill -9 during saves, an edited configuration or split, --allow-changes, metrics without
// duplicated steps, the run directory's lock, an existing run directory, colliding names.
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { generateSynthetic } from '../../ts/data/synth.ts'
import { newestCheckpoint, readCheckpoint, saveCheckpoint, type DriverState, type SavingGroup } from '../../ts/experiment/checkpoint.ts'
import { evaluateCheckpoint } from '../../ts/experiment/evaluate.ts'
import { cutMetrics } from '../../ts/experiment/metrics-log.ts'
import { createRunDirectory, lockRunDirectory } from '../../ts/experiment/resume.ts'
import { Experiment, type RunOptions, type StepEvent } from '../../ts/experiment/run.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { attachShared } from '../setup/attach.ts'
import { tinyConfig } from '../setup/tiny-run.ts'

let dir: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'prcl-resume-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** A group whose save writes a few random bytes, as the worker would (no worker needed). */
const fakeGroup = {
  size: 1,
  all: async (_op: string, args: (rank: number) => { path: string }) => {
    writeFileSync(args(0).path, `state ${Math.random()}`)
    return [{}]
  },
} as unknown as SavingGroup
const state = (step: number) => ({ step, epoch: 0, samplers: {}, rng: [], best: null, wall_ms: 0 }) as unknown as DriverState

describe('checkpoints without a worker', () => {
  it('the newest valid one is found; a corrupt one is skipped with a warning naming it', async () => {
    const run = join(dir, 'unit')
    await saveCheckpoint(join(run, 'checkpoints', 'best'), fakeGroup, state(4), { name: 'u' } as never)
    await saveCheckpoint(join(run, 'checkpoints', 'latest'), fakeGroup, state(6), { name: 'u' } as never)
    expect((await newestCheckpoint(run))!.state.step).toBe(6)
    for (const [what, corrupt] of [
      ['manifest', () => writeFileSync(join(run, 'checkpoints', 'latest', 'manifest.json'), '{"format": "prcl-che')],
      ['missing file', () => rmSync(join(run, 'checkpoints', 'latest', 'worker.safetensors'))],
      ['hash', () => writeFileSync(join(run, 'checkpoints', 'latest', 'driver.json'), JSON.stringify(state(7)))],
    ] as const) {
      await saveCheckpoint(join(run, 'checkpoints', 'latest'), fakeGroup, state(6), { name: 'u' } as never)
      corrupt()
      const warnings: string[] = []
      const ck = await newestCheckpoint(run, (l) => warnings.push(l))
      expect(ck!.dir, what).toBe(join(run, 'checkpoints', 'best'))
      expect(warnings, what).toHaveLength(1)
      expect(warnings[0]).toContain(`skipped checkpoint ${join(run, 'checkpoints', 'latest')}`)
    }
    expect(() => readCheckpoint(join(run, 'checkpoints', 'latest'))).toThrow(/driver\.json does not match its manifest/)
  })

  it('a save interrupted between its two renames leaves a whole checkpoint, put back by the next save', async () => {
    const run = join(dir, 'renames')
    const latest = join(run, 'checkpoints', 'latest')
    await saveCheckpoint(latest, fakeGroup, state(3), { name: 'u' } as never)
    await saveCheckpoint(`${latest}.tmp`, fakeGroup, state(4), { name: 'u' } as never)
    renameSync(latest, `${latest}.old`) // killed here: no `latest`; `latest.old` (3) and `latest.tmp` (4) whole
    const ck = await newestCheckpoint(run)
    expect([ck!.dir, ck!.state.step]).toEqual([`${latest}.tmp`, 4])
    await saveCheckpoint(latest, fakeGroup, state(5), { name: 'u' } as never)
    expect(readCheckpoint(latest).state.step).toBe(5)
    expect(existsSync(`${latest}.tmp`) || existsSync(`${latest}.old`)).toBe(false)
  })

  it('kill -9 at 24 random moments of repeated saves never leaves a run that cannot resume', async () => {
    const script = join(dir, 'save-loop.mjs')
    await build({
      entryPoints: [fileURLToPath(new URL('./fixtures/save-loop.ts', import.meta.url))], outfile: script,
      bundle: true, platform: 'node', format: 'esm', logLevel: 'silent',
    })
    const run = join(dir, 'killed')
    let saved = 0
    const delays: number[] = []
    for (let k = 0; k < 24; k++) {
      const child: ChildProcess = spawn(process.execPath, [script, run], { stdio: ['ignore', 'pipe', 'inherit'] })
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      let first = true
      await new Promise<void>((resolve) => {
        child.stdout!.setEncoding('utf8').on('data', (text: string) => {
          for (const m of text.matchAll(/saved (\d+)/g)) saved = Math.max(saved, Number(m[1]))
          if (first) {
            first = false
            const delay = Math.random() * 40
            delays.push(Math.round(delay))
            setTimeout(() => { child.kill('SIGKILL'); resolve() }, delay)
          }
        })
        child.once('exit', () => resolve())
      })
      await exited
      const warnings: string[] = []
      const ck = await newestCheckpoint(run, (l) => warnings.push(l))
      expect(ck, `kill ${k} after ${delays.join(', ')} ms`).not.toBeNull()
      expect(ck!.state.step, `kill ${k}: a checkpoint reported saved was lost`).toBeGreaterThanOrEqual(saved)
      expect(warnings, `kill ${k}`).toEqual([])
    }
    expect(saved).toBeGreaterThan(24)
  }, 60_000)

  it('metrics.jsonl is cut back to a step, torn last line included', () => {
    const m = join(dir, 'metrics.jsonl')
    writeFileSync(m, [1, 2, 3, 4].map((s) => JSON.stringify({ type: 'step', step: s })).join('\n') + `\n${JSON.stringify({ type: 'eval', step: 4 })}\n{"type":"st`)
    expect(cutMetrics(m, 2)).toEqual({ dropped: 3, torn: 1 })
    expect(readFileSync(m, 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)).toEqual([1, 2])
  })

  it('run names never collide: a taken name gets a suffix, reserved by mkdir', () => {
    const base = join(dir, 'names', 'run-2026-12-01T00-00-00')
    const made = Array.from({ length: 3 }, () => createRunDirectory(base, { auto: true }))
    expect(made).toEqual([base, `${base}-2`, `${base}-3`])
  })

  it('a second lock on a run directory is refused naming the pid; a dead pid\'s lock is taken over', async () => {
    const run = join(dir, 'locked')
    mkdirSync(run, { recursive: true })
    const lock = lockRunDirectory(run)
    expect(() => lockRunDirectory(run)).toThrow(new RegExp(`in use by another driver, pid ${process.pid}`))
    lock.release()
    const child = spawn(process.execPath, ['-e', ''])
    await new Promise((resolve) => child.once('exit', resolve))
    writeFileSync(join(run, 'run.lock'), JSON.stringify({ pid: child.pid, host: (await import('node:os')).hostname(), started: 'then' }))
    const taken = lockRunDirectory(run)
    expect(JSON.parse(readFileSync(join(run, 'run.lock'), 'utf8')).pid).toBe(process.pid)
    taken.release()
    expect(existsSync(join(run, 'run.lock'))).toBe(false)
  })
})

describe('resuming a run on the synthetic dataset', () => {
  let worker: Worker
  let data: string

  beforeAll(async () => {
    worker = await attachShared()
    data = join(dir, 'data')
    await generateSynthetic({ out: data, seed: 0, images: 24, val: 6, size: 40, labeled: 8 })
  }, 120_000)
  afterAll(async () => {
    await worker?.close()
  })

  function config(sets: string[] = [], root = data): ExperimentConfig {

    return tinyConfig(root, 'resume', sets)

  }

  async function steps(cfg: ExperimentConfig | undefined, runDir: string, opts: RunOptions = {}, log: string[] = []): Promise<StepEvent[]> {
    const exp = new Experiment(cfg, { runDir, worker, progress: false, log: (l) => log.push(l), ...opts })
    const seen: StepEvent[] = []
    exp.on('step', (e: StepEvent) => seen.push(e))
    await exp.run()
    return seen
  }
  const logged = (runDir: string) => readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))

  it('a corrupt latest with a valid best: resumes from best with a warning; no step twice in metrics.jsonl', async () => {
    const whole = await steps(config(), join(dir, 'whole'))
    const runDir = join(dir, 'corrupt-latest')
    // Steps 1–5: latest at 3, best at 4 (the evaluation after epoch 1), latest at 5.
    await steps(config(), runDir, { stopAfter: 5 })
    writeFileSync(join(runDir, 'checkpoints', 'latest', 'driver.json'), '{"step": 5')
    const log: string[] = []
    const rest = await steps(undefined, runDir, { resume: true }, log)
    expect(log.join('\n')).toMatch(new RegExp(`warning: skipped checkpoint ${join(runDir, 'checkpoints', 'latest')}: .*driver\\.json does not match`))
    expect(log.join('\n')).toMatch(/resumed .* at step 4 .*checkpoints\/best/)
    expect(log.join('\n')).toMatch(/metrics\.jsonl: dropped 1 line logged after step 4/)
    expect(rest.map((e) => e.step)).toEqual([5, 6, 7, 8])
    const lines = logged(runDir)
    expect(lines.filter((l) => l.type === 'step').map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(lines.filter((l) => l.type === 'eval').map((l) => l.step)).toEqual([4, 8])
    expect(lines.filter((l) => l.type === 'step').map((l) => [l.step, l.total])).toEqual(whole.map((e) => [e.step, e.total]))
    expect(existsSync(join(runDir, 'run.lock'))).toBe(false)
  }, 300_000)

  it('a run directory whose config.json names another interpreter never runs it (resume, eval)', async () => {
    const runDir = join(dir, 'foreign-python')
    await steps(config(), runDir, { stopAfter: 3 })
    const marker = join(dir, 'it-ran')
    const foreign = join(dir, 'foreign-python.sh')
    writeFileSync(foreign, `#!/bin/sh\ntouch ${marker}\nexit 1\n`, { mode: 0o755 })
    const saved = JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8'))
    saved.worker.python = foreign
    writeFileSync(join(runDir, 'config.json'), JSON.stringify(saved))
    // No worker given: the run starts its own, on this environment's interpreter.
    const log: string[] = []
    const exp = new Experiment(undefined, { runDir, resume: true, progress: false, log: (l) => log.push(l) })
    expect((await exp.run()).steps).toBe(8)
    expect(log.join('\n')).toContain(`names worker.python ${foreign}: not used`)
    expect((await evaluateCheckpoint(runDir, { which: 'latest', models: ['teacher'] })).results).toHaveLength(1)
    expect(existsSync(marker)).toBe(false)
  }, 300_000)

  it('resumes from the leftover of a save killed between its renames', async () => {
    const runDir = join(dir, 'leftover')
    await steps(config(), runDir, { stopAfter: 3 })
    const latest = join(runDir, 'checkpoints', 'latest')
    renameSync(latest, `${latest}.tmp`)
    const log: string[] = []
    const rest = await steps(config(), runDir, { resume: true }, log)
    expect(log.join('\n')).toMatch(new RegExp(`at step 3 \\(epoch \\d+\\) from ${latest}\\.tmp`))
    expect(rest.map((e) => e.step)).toEqual([4, 5, 6, 7, 8])
    expect(readCheckpoint(latest).state.step).toBe(8)
  }, 300_000)

  it('refuses an edited configuration, a changed split, another --config; --allow-changes takes more epochs', async () => {
    const runDir = join(dir, 'edited')
    await steps(config(), runDir, { stopAfter: 3 })
    const saved = join(runDir, 'config.json')
    const original = readFileSync(saved, 'utf8')
    // The run's config.json edited by hand: the checkpoint's configuration is the reference.
    writeFileSync(saved, JSON.stringify({ ...JSON.parse(original), seed: 7 }, null, 2))
    await expect(new Experiment(undefined, { runDir, resume: true, worker, log: () => undefined }).run())
      .rejects.toThrow(/cannot resume .*differs from its checkpoint .*latest in seed: 0 → 7/)
    writeFileSync(saved, original)
    // --config with another setting: refused before anything starts.
    expect(() => new Experiment(config(['optim.lr=0.5']), { runDir, resume: true, worker })).toThrow(/optim\.lr: .* → 0\.5.*start a new run/)
    expect(() => new Experiment(config(['sampling.epochs=3']), { runDir, resume: true, worker })).toThrow(/sampling\.epochs: 2 → 3.*pass --allow-changes/)
    expect(() => new Experiment(undefined, { runDir, resume: true, worker, set: ['sampling.batch_size=4'], allowChanges: true })).toThrow(/sampling\.batch_size: 2 → 4/)
    // The run's config.json and --config agree on another data.root: the checkpoint's decides.
    cpSync(data, join(dir, 'elsewhere'), { recursive: true })
    writeFileSync(saved, JSON.stringify({ ...JSON.parse(original), data: { ...JSON.parse(original).data, root: join(dir, 'elsewhere') } }, null, 2))
    await expect(new Experiment(config([], join(dir, 'elsewhere')), { runDir, resume: true, worker, allowChanges: true, log: () => undefined }).run())
      .rejects.toThrow(/data\.root: .*elsewhere/)
    writeFileSync(saved, original)
    // A split file that lists other samples: refused even with --allow-changes, naming it.
    const own = join(dir, 'data-own')
    cpSync(data, own, { recursive: true })
    const runOwn = join(dir, 'edited-split')
    await steps(config([], own), runOwn, { stopAfter: 3 })
    const ownSplit = join(own, 'splits/8/0/labeled_filename.txt')
    const text = readFileSync(ownSplit, 'utf8')
    writeFileSync(ownSplit, text.trim().split('\n').slice(0, -1).join('\n') + '\n')
    await expect(new Experiment(undefined, { runDir: runOwn, resume: true, worker, allowChanges: true, log: () => undefined }).run())
      .rejects.toThrow(new RegExp(`split labeled \\(${ownSplit}\\) lists other samples: 8 samples.*7`))
    // The same samples in other bytes: refused without --allow-changes, accepted with it.
    writeFileSync(ownSplit, text.replace(/\n/g, '\r\n'))
    await expect(new Experiment(undefined, { runDir: runOwn, resume: true, worker, log: () => undefined }).run())
      .rejects.toThrow(/split labeled .* changed bytes but lists the same 8 samples.*--allow-changes/)
    writeFileSync(ownSplit, text)
    // More epochs with --allow-changes: continues to the new end, and the run's config says so.
    const log: string[] = []
    const rest = await steps(config(['sampling.epochs=3']), runDir, { resume: true, allowChanges: true }, log)
    expect(log.join('\n')).toContain('resuming with changed settings (--allow-changes): sampling.epochs: 2 → 3')
    expect(rest.map((e) => e.step)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12])
    expect(JSON.parse(readFileSync(saved, 'utf8')).sampling.epochs).toBe(3)
    expect(JSON.parse(readFileSync(join(runDir, 'splits.json'), 'utf8')).labeled.sha16).toMatch(/^[0-9a-f]{16}$/)
  }, 300_000)

  it('a locked run, an existing run without --resume, a run with steps and no checkpoint: each refused', async () => {
    const runDir = join(dir, 'guarded')
    await steps(config(), runDir, { stopAfter: 2 })
    expect(() => new Experiment(config(), { runDir, worker })).toThrow(new RegExp(`${runDir} already holds a run .*--resume ${runDir}`))
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'])
    try {
      writeFileSync(join(runDir, 'run.lock'), JSON.stringify({ pid: holder.pid, host: (await import('node:os')).hostname(), started: 'now' }))
      await expect(new Experiment(undefined, { runDir, resume: true, worker, log: () => undefined }).run())
        .rejects.toThrow(new RegExp(`in use by another driver, pid ${holder.pid}`))
    } finally {
      holder.kill('SIGKILL')
      await new Promise((resolve) => holder.once('exit', resolve))
    }
    // The holder is gone: its lock is stale and taken over. No checkpoint, but steps logged: refused.
    rmSync(join(runDir, 'checkpoints'), { recursive: true })
    await expect(new Experiment(undefined, { runDir, resume: true, worker, log: () => undefined }).run())
      .rejects.toThrow(/has no valid checkpoint, although its metrics\.jsonl records 2 steps/)
    // A run that never got past its start (no step logged) starts at step 0.
    rmSync(join(runDir, 'metrics.jsonl'))
    const log: string[] = []
    const all = await steps(undefined, runDir, { resume: true, stopAfter: 1 }, log)
    expect(all.map((e) => e.step)).toEqual([1])
    expect(log.join('\n')).toContain('never got past its start')
  }, 300_000)
})
