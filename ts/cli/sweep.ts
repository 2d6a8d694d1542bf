// `prcl sweep --config PRESET|FILE --out DIR [--methods LIST] [--grid PATH=[V,...] ...] [--seeds LIST]
//   [--parallel N] [--devices LIST] [--baseline CELL] [--print-commands] [--json]` (ts/sweep/).
import { METHODS, gridAxis, methodsAxis, type SweepAxis } from '../sweep/cells.ts'
import { runSweep, sweepCommands, type SweepOptions } from '../sweep/run.ts'
import { sweepText } from '../sweep/table.ts'
import { parseCommand } from './args.ts'
import { sweep as SWEEP } from './commands.ts'
import { onFirstSignal, signalExitCode } from './signals.ts'
import { UsageError } from './usage.ts'

export async function sweepCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(SWEEP, args)
  const axes: SweepAxis[] = []
  try {
    if (values.methods !== undefined) axes.push(methodsAxis(values.methods.split(',').map((m) => m.trim())))
    for (const g of values.grid) axes.push(gridAxis(g))
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message, 'sweep')
    throw e
  }
  if (axes.length === 0) throw new UsageError('a sweep needs an axis: --methods LIST and/or --grid PATH=[V,...]', 'sweep')
  const devices = values.devices?.split(',').map((d) => d.trim())
  const bad = devices?.find((d) => !/^(cpu|cuda(:[0-9]+)?)$/.test(d))
  if (bad !== undefined) throw new UsageError(`--devices: '${bad}' is not a device (cpu, cuda, cuda:N)`, 'sweep')
  const labels = Object.fromEntries(Object.entries(METHODS).map(([k, m]) => [k, m.label]))
  const o: SweepOptions = {
    config: values.config, set: values.set, axes, seeds: values.seeds, out: values.out, parallel: values.parallel,
    devices, baseline: values.baseline, title: values.title, labels: values.methods !== undefined && axes.length === 1 ? labels : undefined,
  }
  if (values['print-commands']) {
    for (const line of sweepCommands(o)) console.log(line)
    return 0
  }
  const abort = new AbortController()
  let signal: NodeJS.Signals | null = null
  const release = onFirstSignal((sig) => { signal = sig; abort.abort(sig) })
  const r = await runSweep({ ...o, signal: abort.signal }).finally(release)
  console.log(sweepText(r, o.labels))
  for (const f of r.failed) console.log(`failed: ${f.name} (${f.run_dir}): ${f.error}`)
  if (r.report) console.log(`report: ${r.report}`)
  console.log(`sweep: ${r.out}/sweep.json; ${r.minutes.toFixed(1)} minutes`)
  if (values.json) console.log(JSON.stringify(r))
  if (signal) {
    console.error(`stopped by ${signal}: run the same command again to resume the sweep`)
    return signalExitCode(signal)
  }
  return r.failed.length ? 1 : 0
}
