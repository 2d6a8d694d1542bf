// `prcl bench driver`: how many GPUs one driver process feeds. Two things bound it: how many bytes
// a second one Node process pushes to the workers (measured over ipc, plain tcp and CURVE tcp on
// loopback, with the driver's CPU time per MB), and what a GPU's step costs the driver under each
// reader — data.reader driver reads the rank's files and sends their bytes; data.reader rank sends
// their names (measured at VOC and Cityscapes sizes, one rank's shard of the released batch). The
// arithmetic — GPUs fed = what the driver can do per second / what one GPU asks of it per second —
// is bench/results/driver.md's.
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pack } from 'msgpackr'
import { preset } from '../config/presets.ts'
import { PY_DIR, ROOT } from '../paths.ts'
import { loadDriverKeys, writeKeys } from '../wire/curve.ts'
import { tensor } from '../wire/tensor.ts'
import { WorkerGroup } from '../worker/group.ts'
import { findPython } from '../worker/python.ts'
import { Worker } from '../worker/worker.ts'
import { KINDS } from './data.ts'
import { machine } from './wire.ts'

const MB = 2 ** 20
const r2 = (x: number) => Math.round(x * 100) / 100
/** The driver's CPU time (user + system) in ms spent by `fn`, and its wall time. */
async function costOf(fn: () => Promise<unknown>): Promise<{ cpu_ms: number; wall_ms: number }> {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await fn()
  const c = process.cpuUsage(c0)
  return { cpu_ms: (c.user + c.system) / 1000, wall_ms: performance.now() - t0 }
}

export interface TransportCase { transport: 'ipc' | 'tcp' | 'curve'; mb_per_s: number; driver_cpu_ms_per_mb: number }

/** 16 MB uploads to one worker, `n` of them one after another: MB/s and the driver's CPU per MB. */
async function pushed(call: (x: ReturnType<typeof tensor>) => Promise<unknown>, n: number): Promise<Omit<TransportCase, 'transport'>> {
  const x = tensor(new Float32Array((16 * MB) / 4).map((_, i) => i), [4, 1024, 1024])
  for (let i = 0; i < 3; i++) await call(x)
  const c = await costOf(async () => { for (let i = 0; i < n; i++) await call(x) })
  const mb = 16 * n
  return { mb_per_s: r2(mb / (c.wall_ms / 1000)), driver_cpu_ms_per_mb: r2(c.cpu_ms / mb) }
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => { const p = (srv.address() as { port: number }).port; srv.close(() => resolve(p)) })
  })
}

async function transports(n: number, python: string): Promise<TransportCase[]> {
  const out: TransportCase[] = []
  for (const transport of ['ipc', 'tcp'] as const) {
    const w = await Worker.start({ transport, device: 'cpu', log: 'silent', python })
    try { out.push({ transport, ...await pushed((x) => w.call('upload', {}, { tensors: { x } }), n) }) } finally { await w.close() }
  }
  // CURVE: a rank started elsewhere connects to the driver's keyed endpoint, as on a cluster.
  const keys = mkdtempSync(join(tmpdir(), 'prcl-bench-keys-'))
  let proc: ReturnType<typeof spawn> | null = null
  try {
    writeKeys(keys, { force: true })
    const endpoint = `tcp://127.0.0.1:${await freePort()}`
    const connecting = WorkerGroup.connect({ size: 1, listen: endpoint, curve: loadDriverKeys(keys), waitMs: 120_000 })
    proc = spawn(python, ['-m', 'prcl_worker', '--connect', endpoint, '--keys', keys, '--device', 'cpu', '--quiet'],
      { env: { ...process.env, PYTHONPATH: PY_DIR }, stdio: 'ignore' })
    const group = await connecting
    try { out.push({ transport: 'curve', ...await pushed((x) => group.call(0, 'upload', {}, { tensors: { x } }), n) }) } finally { await group.close() }
  } finally {
    if (proc && proc.exitCode === null) proc.kill('SIGKILL')
    rmSync(keys, { recursive: true, force: true })
  }
  return out
}

export interface ReaderCase {
  dataset: string
  /** One rank's shard of the released global batch (labeled images with labels, unlabeled images). */
  images_per_rank_step: number
  /** Bytes the driver sends a rank per step, and its CPU time reading them (driver reader). */
  driver_reader: { bytes: number; read_cpu_ms: number }
  /** The same step with data.reader rank: the paths' bytes in the request header. */
  rank_reader: { bytes: number }
}

async function readers(dir: string, steps: number): Promise<ReaderCase[]> {
  const out: ReaderCase[] = []
  for (const k of KINDS) {
    const b = preset(`${k.preset}-released`)!.sampling.batch_size / 8 // per rank, as released on 8 GPUs
    const ext = k.format === 'JPEG' ? 'jpg' : 'png'
    const names = (s: number) => Array.from({ length: b }, (_, i) => (s * b + i) % k.files)
    let bytes = 0
    const c = await costOf(async () => {
      for (let s = 0; s < steps; s++) {
        const files = await Promise.all(names(s).flatMap((f) => [`${k.name}-${f}.${ext}`, `${k.name}-${f}-label.png`, `${k.name}-${(f + 1) % k.files}.${ext}`]
          .map((n) => readFile(join(dir, n)))))
        bytes += files.reduce((a, f) => a + f.length, 0)
      }
    })
    // The paths as data.reader rank sends them: VOC's and Cityscapes' layouts, typical lengths.
    const path = k.name === 'voc' ? 'JPEGImages/2008_000123.jpg' : 'leftImg8bit/train/aachen/aachen_000123_000019_leftImg8bit.png'
    const label = k.name === 'voc' ? 'SegmentationClassAug/2008_000123.png' : 'gtFine/train/aachen/aachen_000123_000019_gtFine_labelTrainIds.png'
    const files = { img_l: Array(b).fill(path), lbl_l: Array(b).fill(label), img_u: Array(b).fill(path) }
    out.push({
      dataset: k.name, images_per_rank_step: 2 * b,
      driver_reader: { bytes: Math.round(bytes / steps), read_cpu_ms: r2(c.cpu_ms / steps) },
      rank_reader: { bytes: pack({ files }).length },
    })
  }
  return out
}

export async function driverBench(o: { uploads?: number; steps?: number; python?: string } = {}) {
  const { python } = await findPython(o.python)
  const dir = mkdtempSync(join(tmpdir(), 'prcl-bench-driver-'))
  try {
    const make = join(ROOT, 'bench', 'make_images.py')
    await Promise.all(KINDS.map((k) => promisify(execFile)(python, [make, dir, k.name, String(k.width), String(k.height), k.format, String(k.files)])))
    const cases = await transports(o.uploads ?? 20, python)
    const reads = await readers(dir, o.steps ?? 40)
    return { transports: cases, readers: reads, machine: machine(), method: 'transports: 16 MB uploads one after another, MB/s over all of them; readers: the files of one rank\'s step read from disk, per step' }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export function driverTable(r: Awaited<ReturnType<typeof driverBench>>): string {
  const lines = ['transport  MB/s    driver CPU ms per MB']
  for (const t of r.transports) lines.push(`${t.transport.padEnd(9)}  ${String(t.mb_per_s).padStart(6)}  ${t.driver_cpu_ms_per_mb}`)
  lines.push('', 'per GPU step (one rank\'s shard of the released batch)')
  for (const c of r.readers) {
    lines.push(`${c.dataset.padEnd(10)} ${c.images_per_rank_step} images: driver reader ${(c.driver_reader.bytes / 2 ** 20).toFixed(2)} MB sent, ` +
      `${c.driver_reader.read_cpu_ms} ms CPU reading; rank reader ${c.rank_reader.bytes} bytes of paths`)
  }
  return lines.join('\n')
}
