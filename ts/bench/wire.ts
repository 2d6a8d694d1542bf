// Wire benchmark: small-message round trip, and a 16 MB float32 tensor up and back.
// Run: `npx prcl bench wire [--json] [--transport ipc|tcp] [--save]`.
import { spawn } from 'node:child_process'
import { cpus, hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Router } from 'zeromq'
import { ROOT } from '../paths.ts'
import { tensor } from '../wire/tensor.ts'
import { findPython } from '../worker/python.ts'
import { Worker } from '../worker/worker.ts'

export interface WireBenchOptions {
  transport?: string
  /** Also measure bare ZeroMQ (bench/raw_echo.py) on the same machine, for context. */
  baseline?: boolean
  rttIterations?: number
  bigIterations?: number
}

export interface WireBenchResult {
  rtt_us_p50: number
  rtt_us_p99: number
  upload_16mb_ms_p50: number
  echo_16mb_ms_p50: number
  upload_16mb_gbps: number
  echo_16mb_gbps: number
  transport: string
  baseline?: { rtt_us_p50: number; echo_16mb_ms_p50: number }
  iterations: { rtt: number; big: number }
  machine: Record<string, unknown>
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - t0) / 1e6
}

export async function wireBench(opts: WireBenchOptions = {}): Promise<WireBenchResult> {
  const transport = opts.transport ?? 'ipc'
  const nRtt = opts.rttIterations ?? 2000
  const nBig = opts.bigIterations ?? 40
  const worker = await Worker.start({ transport, device: 'cpu', log: 'silent' })
  try {
    for (let i = 0; i < 200; i++) await worker.call('ping', {})
    const rtt: number[] = []
    for (let i = 0; i < nRtt; i++) rtt.push(await time(() => worker.call('ping', {})))

    const bytes = 16 * 2 ** 20
    const x = tensor(new Float32Array(bytes / 4).map((_, i) => i), [4, 1024, 1024])
    const upload: number[] = []
    const echo: number[] = []
    for (let i = 0; i < 3; i++) { await worker.call('upload', {}, { tensors: { x } }); await worker.call('echo', {}, { tensors: { x } }) }
    // The buffer is reused only after the reply: by then the message has surely left.
    for (let i = 0; i < nBig; i++) upload.push(await time(() => worker.call('upload', {}, { tensors: { x } })))
    for (let i = 0; i < nBig; i++) echo.push(await time(() => worker.call('echo', {}, { tensors: { x } })))
    const baseline = opts.baseline ? await rawBaseline(transport, nRtt, nBig, x.data) : undefined
    const up = quantile(upload, 0.5)
    const ec = quantile(echo, 0.5)
    return {
      rtt_us_p50: round(quantile(rtt, 0.5) * 1000),
      rtt_us_p99: round(quantile(rtt, 0.99) * 1000),
      upload_16mb_ms_p50: round(up),
      echo_16mb_ms_p50: round(ec),
      upload_16mb_gbps: round(bytes / (up / 1000) / 1e9),
      echo_16mb_gbps: round((2 * bytes) / (ec / 1000) / 1e9),
      transport,
      ...(baseline ? { baseline } : {}),
      iterations: { rtt: nRtt, big: nBig },
      machine: machine(worker),
    }
  } finally {
    await worker.close()
  }
}

/** The same round trips over bare ZeroMQ: a Router here, bench/raw_echo.py there. */
async function rawBaseline(transport: string, nRtt: number, nBig: number, big: Float32Array) {
  const { python } = await findPython()
  const endpoint = transport === 'tcp' ? 'tcp://127.0.0.1:*' : `ipc://${join(tmpdir(), `prcl-raw-${process.pid}.sock`)}`
  const router = new Router({ linger: 0 })
  await router.bind(endpoint)
  const child = spawn(python, [join(ROOT, 'bench', 'raw_echo.py'), router.lastEndpoint ?? endpoint], { stdio: 'inherit' })
  try {
    const [peer] = await router.receive()
    const small = Buffer.from([0x81, 0xa2, 0x6f, 0x70, 0xa4, 0x70, 0x69, 0x6e, 0x67]) // msgpack {op: 'ping'}
    const bigFrame = Buffer.from(big.buffer, big.byteOffset, big.byteLength)
    const roundTrip = async (parts: Buffer[]) => { await router.send([peer!, ...parts]); await router.receive() }
    for (let i = 0; i < 200; i++) await roundTrip([small])
    const rtt: number[] = []
    for (let i = 0; i < nRtt; i++) rtt.push(await time(() => roundTrip([small])))
    const echo: number[] = []
    for (let i = 0; i < 3; i++) await roundTrip([small, bigFrame])
    for (let i = 0; i < nBig; i++) echo.push(await time(() => roundTrip([small, bigFrame])))
    await router.send([peer!, Buffer.from('stop')])
    return { rtt_us_p50: round(quantile(rtt, 0.5) * 1000), echo_16mb_ms_p50: round(quantile(echo, 0.5)) }
  } finally {
    router.close()
    child.kill()
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100
}

export function machine(worker?: Worker): Record<string, unknown> {
  const c = cpus()
  const h = worker?.hello
  return {
    host: hostname(), cpu: c[0]?.model ?? 'unknown', cores: c.length, node: process.versions.node,
    ...(h ? { python: h.python, torch: h.torch, pyzmq: h.pyzmq, libzmq: h.libzmq, device: h.device_name } : {}),
    date: new Date().toISOString(),
  }
}

export function wireTable(r: WireBenchResult): string {
  const rows = [
    ['small round trip p50', `${r.rtt_us_p50} µs`, `p99 ${r.rtt_us_p99} µs`, 'goal ≤ 150 µs'],
    ['16 MB upload p50', `${r.upload_16mb_ms_p50} ms`, `${r.upload_16mb_gbps} GB/s`, ''],
    ['16 MB echo p50', `${r.echo_16mb_ms_p50} ms`, `${r.echo_16mb_gbps} GB/s (both ways)`, 'goal ≥ 2 GB/s'],
  ]
  if (r.baseline) {
    rows.push(['bare ZeroMQ round trip p50', `${r.baseline.rtt_us_p50} µs`, 'same machine, no protocol', ''])
    rows.push(['bare ZeroMQ 16 MB echo p50', `${r.baseline.echo_16mb_ms_p50} ms`, `${round((2 * 16 * 2 ** 20) / (r.baseline.echo_16mb_ms_p50 / 1000) / 1e9)} GB/s`, ''])
  }
  const w = [0, 1, 2, 3].map((i) => Math.max(...rows.map((row) => row[i]!.length)))
  return [`wire benchmark over ${r.transport} (${r.machine.cpu}, ${r.machine.cores} cores)`,
    ...rows.map((row) => row.map((c, i) => c.padEnd(w[i]!)).join('  '))].join('\n')
}
