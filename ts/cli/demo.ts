// `prcl demo [--json] [--seeds 0,1,2] [--methods supervised,unsup,prcl] [--parallel N] [--out DIR]`:
// the main job on a newcomer's machine (ts/sweep/demo.ts).
import { methodsAxis, type Method } from '../sweep/cells.ts'
import { demoTable, runDemo } from '../sweep/demo.ts'
import { parseCommand } from './args.ts'
import { demo as DEMO } from './commands.ts'
import { onFirstSignal, signalExitCode } from './signals.ts'
import { UsageError } from './usage.ts'

export async function demo(args: string[]): Promise<number> {
  const { values } = parseCommand(DEMO, args)
  const methods = values.methods?.split(',').map((m) => m.trim())
  try {
    if (methods) methodsAxis(methods)
  } catch (e) {
    throw new UsageError((e as Error).message, 'demo')
  }
  if (methods && !methods.includes('supervised')) throw new UsageError(`--methods: the demo compares with supervised-only, so the list must include supervised (got ${values.methods})`, 'demo')
  const abort = new AbortController()
  let signal: NodeJS.Signals | null = null
  const release = onFirstSignal((sig) => { signal = sig; abort.abort(sig) })
  const r = await runDemo({ out: values.out, seeds: values.seeds, methods: methods as Method[] | undefined, parallel: values.parallel, pretrain: values.pretrain, signal: abort.signal }).finally(release)
  console.log(demoTable(r))
  for (const f of r.failed) console.log(`failed: ${f.name} (${f.run_dir}): ${f.error}`)
  if (values.json) console.log(JSON.stringify(r))
  if (signal) {
    console.error(`stopped by ${signal}: run the same command again to resume the demo`)
    return signalExitCode(signal)
  }
  return r.failed.length ? 1 : 0
}
