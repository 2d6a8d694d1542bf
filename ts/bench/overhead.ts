// `prcl bench overhead`: the same tiny-model training on CPU, driven step by step from TypeScript
// over ZeroMQ, against a loop inside the Python worker process calling the same step function on
// the recorded requests (python -m prcl_worker.replay). Also checks that both give equal losses.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../config/load.ts'
import { generateSynthetic } from '../data/synth.ts'
import { Experiment, type StepEvent } from '../experiment/run.ts'
import { PY_DIR, ROOT } from '../paths.ts'
import { findPython } from '../worker/python.ts'
import { machine } from './wire.ts'

export async function overheadBench(o: { steps?: number } = {}) {
  const steps = o.steps ?? 60
  const skip = 5 // warm-up steps left out of both rates
  const dir = mkdtempSync(join(tmpdir(), 'prcl-overhead-'))
  try {
    const data = join(dir, 'data')
    await generateSynthetic({ out: data, seed: 0, images: 64, val: 4, size: 64, labeled: 16 })
    const cfg = loadConfig('synthetic-demo', [`data.root=${data}`, 'sampling.epochs=1', `sampling.epoch={"kind":"fixed","steps":${steps}}`,
      `checkpoint.every_steps=${steps}`, 'name=overhead'])
    const record = join(dir, 'requests.bin')
    const exp = new Experiment(cfg, { runDir: join(dir, 'run'), record, progress: false, log: () => undefined })
    const driven: Array<StepEvent & { at: number }> = []
    exp.on('step', (e: StepEvent) => driven.push({ ...e, at: performance.now() }))
    await exp.run()
    const driverRate = (steps - skip) / ((driven[steps - 1]!.at - driven[skip - 1]!.at) / 1000)

    const { python } = await findPython()
    const replayed = await new Promise<Array<{ step: number; total: number; ms: number }>>((resolve, reject) => {
      const child = spawn(python, ['-m', 'prcl_worker.replay', record], { cwd: ROOT, env: { ...process.env, PYTHONPATH: PY_DIR }, stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      child.stdout.on('data', (d) => { out += d })
      child.on('exit', (code) => code === 0 ? resolve(out.trim().split('\n').map((l) => JSON.parse(l))) : reject(new Error(`replay exited with ${code}`)))
    })
    const inprocMs = replayed.slice(skip).reduce((a, r) => a + r.ms, 0)
    const inprocRate = (steps - skip) / (inprocMs / 1000)
    const equal = replayed.length === driven.length && replayed.every((r, i) => r.total === driven[i]!.total)
    const r2 = (x: number) => Math.round(x * 1000) / 1000
    return {
      driver_steps_per_s: r2(driverRate), inprocess_steps_per_s: r2(inprocRate), ratio: r2(driverRate / inprocRate),
      losses_equal: equal, steps, timed_steps: steps - skip, machine: machine(),
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export function overheadTable(r: Awaited<ReturnType<typeof overheadBench>>): string {
  return [
    `tiny-model training on CPU, ${r.timed_steps} timed steps`,
    `  driven from TypeScript over ZeroMQ   ${r.driver_steps_per_s.toFixed(2)} steps/s`,
    `  in-process replay (same requests)    ${r.inprocess_steps_per_s.toFixed(2)} steps/s`,
    `  ratio ${r.ratio} (goal ≥ 0.97); replayed losses equal the driven ones: ${r.losses_equal}`,
  ].join('\n')
}
