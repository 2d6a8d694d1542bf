// `prcl doctor [--json]`: which Python runs the worker (and which candidates were refused and
// why), then a real worker's hello and a round trip.
import { createRequire } from 'node:module'
import { locateWeights, weightsDirs } from '../weights/resolve.ts'
import { findPython, PythonNotFoundError } from '../worker/python.ts'
import { Worker } from '../worker/worker.ts'
import { PROTOCOL_VERSION } from '../wire/envelope.ts'
import { parseCommand } from './args.ts'
import { doctor as DOCTOR } from './commands.ts'

export async function doctor(args: string[]): Promise<number> {
  const { values } = parseCommand(DOCTOR, args)
  const say = (line: string) => { if (!values.json) console.log(line) }
  const zmqVersion = (createRequire(import.meta.url)('zeromq/package.json') as { version: string }).version
  say(`node ${process.versions.node}, zeromq ${zmqVersion}, protocol v${PROTOCOL_VERSION}`)

  let choice
  try {
    choice = await findPython()
  } catch (e) {
    if (!(e instanceof PythonNotFoundError)) throw e
    if (values.json) console.log(JSON.stringify({ ok: false, protocol: PROTOCOL_VERSION, error: e.message, rejected: e.rejected }))
    else console.error(e.message)
    return 1
  }
  for (const r of choice.rejected) say(`  rejected ${r.candidate} [${r.source}]: ${r.reason}`)
  const m = choice.probe.modules ?? {}
  say(`python ${choice.probe.executable} (${choice.probe.version}) [${choice.probe.source}]: ${Object.entries(m).map(([k, v]) => `${k} ${v}`).join(', ')}`)

  const worker = await Worker.start({ python: choice.python, device: values.device, log: values.json ? 'silent' : 'inherit' })
  try {
    const hello = worker.hello
    const n = 200
    const times: number[] = []
    for (let i = 0; i < n + 20; i++) {
      const t0 = process.hrtime.bigint()
      await worker.call('ping', {})
      if (i >= 20) times.push(Number(process.hrtime.bigint() - t0) / 1000)
    }
    const rttUs = times.sort((a, b) => a - b)[n >> 1]!
    if (values.json) {
      console.log(JSON.stringify({
        ok: true,
        protocol: hello.protocol,
        python: { executable: choice.probe.executable, version: choice.probe.version, source: choice.probe.source, modules: m },
        rejected: choice.rejected,
        torch: hello.torch,
        cuda: hello.cuda,
        device: hello.device,
        device_name: hello.device_name,
        ops: Object.keys(hello.ops),
        worker: { instance: hello.instance, pid: hello.pid, version: hello.worker_version, endpoint: worker.endpoint, schema_hash: hello.schema_hash },
        node: process.versions.node,
        zeromq: zmqVersion,
        ping_rtt_us: Math.round(rttUs),
        weights: { dirs: weightsDirs(), files: locateWeights().map((w) => ({ backbone: w.backbone, file: w.file, found: w.found })) },
      }))
    } else {
      say(`worker ${hello.worker_version} pid ${hello.pid} on ${hello.device} (${hello.device_name}), torch ${hello.torch}, cuda ${hello.cuda ?? 'none'}`)
      say(`  endpoint ${worker.endpoint}, schemas ${hello.schema_hash}, heartbeat every ${hello.heartbeat_ms} ms`)
      say(`  ops: ${Object.keys(hello.ops).join(', ')}`)
      say(`  ping round trip: ${rttUs.toFixed(0)} µs (median of ${n})`)
      // model.pretrained: imagenet (every real preset) needs these; `prcl weights` lists and fetches.
      const weights = locateWeights()
      say(`ImageNet weights in ${weightsDirs().join(' or ')}: ${weights.map((w) => `${w.backbone} ${w.found ? 'found' : 'missing'}`).join(', ')}` +
        (weights.some((w) => !w.found) ? ' (prcl weights fetch NAME, or model.pretrained: none)' : ''))
      say('ok')
    }
  } finally {
    await worker.close()
  }
  return 0
}
