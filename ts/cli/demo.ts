// `prcl demo [--json] [--seeds 0,1,2] [--out DIR]`: the main job on a newcomer's machine.
import { parseArgs } from 'node:util'
import { demoTable, runDemo } from '../experiment/demo.ts'
import { UsageError } from './usage.ts'

export async function demo(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, strict: true, options: { json: { type: 'boolean' }, seeds: { type: 'string' }, out: { type: 'string' } } })
  const seeds = values.seeds?.split(',').map((s) => Number(s.trim()))
  if (seeds && !seeds.every((s) => Number.isInteger(s) && s >= 0)) throw new UsageError(`--seeds takes comma-separated non-negative integers, got '${values.seeds}'`)
  const r = await runDemo({ out: values.out, seeds })
  console.log(demoTable(r))
  if (values.json) console.log(JSON.stringify(r))
  return 0
}
