// `prcl bench <name> [--json] [--save]`: benchmark programs live in ts/bench/; with --save a run is
// appended to bench/results/<name>.jsonl, one JSON line with the machine it ran on.
import { appendFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../paths.ts'
import { parseCommand } from './args.ts'
import { bench as BENCH } from './commands.ts'
import { UsageError } from './usage.ts'

const NAMES = ['wire', 'prcl-loss', 'step', 'overhead', 'ddp', 'data', 'driver', 'learning', 'gpu-inputs'] as const

export async function bench(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(BENCH, args)
  const [name] = positionals
  let result: object
  let table: string
  if (name === 'wire') {
    const { wireBench, wireTable } = await import('../bench/wire.ts')
    const r = await wireBench({ transport: values.transport, baseline: values.baseline })
    ;[result, table] = [r, wireTable(r)]
  } else if (name === 'prcl-loss') {
    const { prclLossBench, prclLossTable } = await import('../bench/prcl-loss.ts')
    const r = await prclLossBench({ device: values.device, quick: values.quick })
    ;[result, table] = [r, prclLossTable(r)]
  } else if (name === 'step') {
    const { stepBench, stepTable } = await import('../bench/step.ts')
    const r = await stepBench({ model: values.model as 'tiny' | 'r101' | undefined, device: values.device, steps: values.steps })
    ;[result, table] = [r, stepTable(r)]
  } else if (name === 'overhead') {
    const { overheadBench, overheadTable } = await import('../bench/overhead.ts')
    const r = await overheadBench({ steps: values.steps })
    ;[result, table] = [r, overheadTable(r)]
  } else if (name === 'ddp') {
    const { ddpBench, ddpTable } = await import('../bench/ddp.ts')
    const r = await ddpBench({ steps: values.steps })
    ;[result, table] = [r, ddpTable(r)]
  } else if (name === 'data') {
    const { dataBench, dataTable } = await import('../bench/data.ts')
    const r = await dataBench({ steps: values.steps, device: values.device, dataset: values.dataset, decodeThreads: values['decode-threads'] })
    ;[result, table] = [r, dataTable(r)]
  } else if (name === 'driver') {
    const { driverBench, driverTable } = await import('../bench/driver.ts')
    const r = await driverBench({ steps: values.steps })
    ;[result, table] = [r, driverTable(r)]
  } else if (name === 'learning') {
    // A sweep of its own: --save writes its runs and table itself (learning.jsonl, learning.md).
    const { learningBench, learningTable, saveLearning } = await import('../bench/learning.ts')
    const { methodsAxis } = await import('../sweep/cells.ts')
    const methods = values.methods?.split(',').map((m) => m.trim())
    try { if (methods) methodsAxis(methods) } catch (e) { throw new UsageError((e as Error).message, 'bench') }
    const r = await learningBench({ seeds: values.seeds, labeled: values.labeled, methods: methods as never, out: values.out, parallel: values.parallel })
    if (values.save && r.stopped === null) {
      const saved = saveLearning(r.runs)
      console.error(`saved ${r.runs.length} runs to ${saved.jsonl}; table in ${saved.md}`)
    }
    console.log(values.json ? JSON.stringify(r) : `${learningTable(r.runs)}\n${r.runs.length} runs in ${r.out}, ${r.minutes.toFixed(1)} minutes${r.failed ? `; ${r.failed} failed` : ''}`)
    return r.failed || r.stopped !== null ? 1 : 0
  } else if (name === 'gpu-inputs') {
    // Not a measurement: the inputs bench/gpu-check.sh reads on a machine without Node.
    const { writeGpuInputs } = await import('../bench/gpu-inputs.ts')
    const path = writeGpuInputs()
    ;[result, table] = [{ path }, `wrote ${path}`]
  } else {
    throw new UsageError(`unknown benchmark '${name ?? ''}' (available: ${NAMES.join(', ')})`, 'bench')
  }
  if (values.save) {
    const dir = join(ROOT, 'bench', 'results')
    mkdirSync(dir, { recursive: true })
    appendFileSync(join(dir, `${name}.jsonl`), JSON.stringify(result) + '\n')
  }
  console.log(values.json ? JSON.stringify(result) : table)
  return 0
}
