// `prcl eval --run DIR [--checkpoint best|latest] [--model teacher|student|both] [--json] [--python PATH]`
import { evaluateCheckpoint } from '../experiment/evaluate.ts'
import { parseCommand } from './args.ts'
import { evalCmd as EVAL } from './commands.ts'
import { checkRunDir } from './run-dir.ts'

export async function evalCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(EVAL, args)
  checkRunDir(values.run, values.checkpoint)
  const models = values.model === 'both' ? ['teacher', 'student'] as const : [values.model]
  const r = await evaluateCheckpoint(values.run, { which: values.checkpoint, models: [...models], python: values.python })
  if (values.json) { console.log(JSON.stringify(r)); return 0 }
  console.log(`checkpoint ${r.checkpoint}`)
  for (const e of r.results) {
    console.log(`${e.model}: mIoU ${(e.miou * 100).toFixed(2)} (${e.protocol}; ${e.excluded.length} classes absent and excluded)`)
    e.classes.forEach((name, k) => console.log(`  ${name.padEnd(16)} ${e.iou[k] === null ? '   —' : (e.iou[k]! * 100).toFixed(2).padStart(6)}`))
  }
  return 0
}
