// `prcl demo [--json] [--seeds 0,1,2] [--out DIR]`: the main job on a newcomer's machine.
import { demoTable, runDemo } from '../experiment/demo.ts'
import { parseCommand } from './args.ts'
import { demo as DEMO } from './commands.ts'

export async function demo(args: string[]): Promise<number> {
  const { values } = parseCommand(DEMO, args)
  const r = await runDemo({ out: values.out, seeds: values.seeds })
  console.log(demoTable(r))
  if (values.json) console.log(JSON.stringify(r))
  return 0
}
