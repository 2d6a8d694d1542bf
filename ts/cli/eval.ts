// `prcl eval --run DIR [--checkpoint best|latest] [--model teacher|student|both]
//  [--protocol KIND] [--scales LIST] [--flip] [--json] [--python PATH]`
import type { ExperimentConfig } from '../config/schema.ts'
import { evaluateCheckpoint } from '../experiment/evaluate.ts'
import { describeProtocol } from '../experiment/protocol.ts'
import { parseCommand } from './args.ts'
import { evalCmd as EVAL } from './commands.ts'
import { checkRunDir } from './run-dir.ts'
import { UsageError } from './usage.ts'

export async function evalCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(EVAL, args)
  checkRunDir(values.run, values.checkpoint)
  const models = values.model === 'both' ? ['teacher', 'student'] as const : [values.model]
  const over: Partial<ExperimentConfig['eval']> = {}
  if (values.protocol) over.protocol = values.protocol
  if (values.scales !== undefined) over.scales = parseScales(values.scales)
  if (values.flip) over.flip = true
  const r = await evaluateCheckpoint(values.run, { which: values.checkpoint, models: [...models], python: values.python, eval: over })
  if (values.json) { console.log(JSON.stringify(r)); return 0 }
  console.log(`checkpoint ${r.checkpoint}`)
  for (const e of r.results) {
    console.log(`${e.model}: mIoU ${(e.miou * 100).toFixed(2)} (${describeProtocol(e.eval_protocol)}; ${e.excluded.length} classes absent and excluded)`)
    e.classes.forEach((name, k) => console.log(`  ${name.padEnd(16)} ${e.iou[k] === null ? '   —' : (e.iou[k]! * 100).toFixed(2).padStart(6)}`))
  }
  return 0
}

function parseScales(text: string): number[] {
  const scales = text.split(',').map((s) => s.trim())
  const bad = scales.filter((s) => !/^\d+(\.\d+)?$/.test(s) || !(Number(s) >= 0.25 && Number(s) <= 4))
  if (!scales.length || bad.length || scales.length > 8) {
    throw new UsageError(`--scales ${text}: expected 1 to 8 comma-separated numbers from 0.25 to 4 (e.g. 0.75,1,1.25)${bad.length ? `; not one: ${bad.join(', ')}` : ''}`, 'eval')
  }
  return scales.map(Number)
}
