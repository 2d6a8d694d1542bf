// `prcl bench prcl-loss`: the worker's PRCL loss against the literal reference, forward + backward,
// at the paper's shapes (2 + 2 images, D = 256, 81×81, 21 classes, Q = 256, K = 512, τ = 100).
// Each implementation runs in its own process (bench/prcl_loss.py), so peak memory is its own.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from '../paths.ts'
import { findPython } from '../worker/python.ts'
import { machine } from './wire.ts'

export interface PrclLossBenchOptions {
  device?: string
  quick?: boolean
  repeats?: number
}

interface ImplResult { ms: number; all_ms: number[]; loss: number; peak_mb: number; device: string; device_name?: string; threads: number; torch: string; shape: Record<string, number> }

function runImpl(python: string, impl: string, args: string[]): Promise<ImplResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [join(ROOT, 'bench', 'prcl_loss.py'), '--impl', impl, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`bench/prcl_loss.py --impl ${impl} exited with ${code}`))
      else resolve(JSON.parse(out.trim().split('\n').pop()!))
    })
  })
}

export async function prclLossBench(o: PrclLossBenchOptions = {}) {
  const { python } = await findPython()
  const args = ['--device', o.device ?? 'cpu']
  if (o.quick) args.push('--size', '21', '--classes', '5')
  const worker = await runImpl(python, 'worker', [...args, '--repeats', String(o.repeats ?? 3)])
  const reference = await runImpl(python, 'reference', [...args, '--repeats', '1'])
  const r2 = (x: number) => Math.round(x * 100) / 100
  return {
    reference_ms: r2(reference.ms),
    worker_ms: r2(worker.ms),
    speedup: r2(reference.ms / worker.ms),
    reference_peak_mb: r2(reference.peak_mb),
    worker_peak_mb: r2(worker.peak_mb),
    memory_ratio: r2(worker.peak_mb / reference.peak_mb),
    loss: { reference: reference.loss, worker: worker.loss },
    worker_all_ms: worker.all_ms.map(r2),
    shape: worker.shape,
    device: worker.device_name ?? worker.device,
    threads: worker.threads,
    torch: worker.torch,
    machine: machine(),
  }
}

export function prclLossTable(r: Awaited<ReturnType<typeof prclLossBench>>): string {
  const s = r.shape
  return [
    `PRCL loss forward+backward on ${r.device} (${r.threads} threads, torch ${r.torch}); ` +
      `${s.batch} images, D=${s.dim}, ${s.size}x${s.size}, ${s.classes} classes, Q=${s.queries}, K=${s.negatives}, τ=${s.temp}`,
    `reference  ${r.reference_ms.toFixed(0).padStart(8)} ms   peak ${r.reference_peak_mb.toFixed(0).padStart(7)} MB   loss ${r.loss.reference.toFixed(5)}`,
    `worker     ${r.worker_ms.toFixed(0).padStart(8)} ms   peak ${r.worker_peak_mb.toFixed(0).padStart(7)} MB   loss ${r.loss.worker.toFixed(5)}`,
    `speedup ${r.speedup}x (goal ≥ 10), memory ${(r.memory_ratio * 100).toFixed(1)}% of the reference (goal ≤ 25%)`,
  ].join('\n')
}
