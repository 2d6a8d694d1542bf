// `prcl eval --run DIR [--checkpoint best|latest] [--model teacher|student|both] [--json]`
import { parseArgs } from 'node:util'
import { evaluateCheckpoint } from '../experiment/evaluate.ts'
import { UsageError } from './usage.ts'

export async function evalCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, strict: true, options: { run: { type: 'string' }, checkpoint: { type: 'string' }, model: { type: 'string' }, json: { type: 'boolean' } } })
  if (!values.run) throw new UsageError('eval needs --run <run directory>')
  const model = values.model ?? 'both'
  if (!['teacher', 'student', 'both'].includes(model)) throw new UsageError(`--model must be teacher, student or both, got '${model}'`)
  const models = model === 'both' ? ['teacher', 'student'] as const : [model as 'teacher' | 'student']
  const r = await evaluateCheckpoint(values.run, { which: values.checkpoint ?? 'best', models: [...models] })
  if (values.json) { console.log(JSON.stringify(r)); return 0 }
  console.log(`checkpoint ${r.checkpoint}`)
  for (const e of r.results) {
    console.log(`${e.model}: mIoU ${(e.miou * 100).toFixed(2)} (${e.protocol}; ${e.excluded.length} classes absent and excluded)`)
    e.classes.forEach((name, k) => console.log(`  ${name.padEnd(16)} ${e.iou[k] === null ? '   —' : (e.iou[k]! * 100).toFixed(2).padStart(6)}`))
  }
  return 0
}
