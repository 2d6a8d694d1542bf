// `prcl demo [--json] [--seeds 0,1,2] [--methods supervised,unsup,prcl] [--out DIR]`: the main job
// on a newcomer's machine.
import { DEMO_METHODS, demoTable, runDemo, type DemoMethod } from '../experiment/demo.ts'
import { parseCommand } from './args.ts'
import { demo as DEMO } from './commands.ts'
import { UsageError } from './usage.ts'

export async function demo(args: string[]): Promise<number> {
  const { values } = parseCommand(DEMO, args)
  const methods = values.methods?.split(',').map((m) => m.trim())
  const unknown = methods?.filter((m) => !(DEMO_METHODS as readonly string[]).includes(m)) ?? []
  if (unknown.length) throw new UsageError(`--methods: unknown ${unknown.join(', ')}; known: ${DEMO_METHODS.join(', ')}`, 'demo')
  if (methods && new Set(methods).size !== methods.length) throw new UsageError(`--methods: ${values.methods} names a method twice`, 'demo')
  const r = await runDemo({ out: values.out, seeds: values.seeds, methods: methods as DemoMethod[] | undefined })
  console.log(demoTable(r))
  if (values.json) console.log(JSON.stringify(r))
  return 0
}
