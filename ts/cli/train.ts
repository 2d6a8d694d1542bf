// `prcl train --config <preset|file> [--set path=value …] [--run-dir DIR] [--resume DIR [--set world.…]] [--record FILE]`
import { loadConfig } from '../config/load.ts'
import { Experiment } from '../experiment/run.ts'
import { parseCommand } from './args.ts'
import { train as TRAIN } from './commands.ts'
import { UsageError } from './usage.ts'

export async function train(args: string[]): Promise<number> {
  const { values } = parseCommand(TRAIN, args)
  if (!values.config && !values.resume) throw new UsageError('train needs --config <preset or file> (or --resume <run dir>)', 'train')
  const stopAfter = values['stop-after']
  const cfg = values.config ? loadConfig(values.config, values.set) : undefined
  // On --resume, --set may change world.* only (continue at another number of workers).
  const exp = new Experiment(cfg!, { runDir: values.resume ?? values['run-dir'], resume: !!values.resume, stopAfter, record: values.record, set: values.resume ? values.set : undefined })
  if (!values.json) {
    console.log(`run directory: ${exp.runDir}`)
    console.log(JSON.stringify(exp.config, null, 2))
  }
  const summary = await exp.run()
  if (values.json) console.log(JSON.stringify(summary))
  else {
    const pct = (x: number | undefined) => (x === undefined ? '—' : (x * 100).toFixed(2))
    console.log(`done: ${summary.steps} steps in ${summary.wall_minutes.toFixed(1)} min; ` +
      `last mIoU ${pct(summary.last?.miou)} (epoch ${summary.last?.epoch ?? '—'}), best ${pct(summary.best?.miou)} (epoch ${summary.best?.epoch ?? '—'})`)
    console.log(`labeled split ${summary.splits.labeled.path} sha256 ${summary.splits.labeled.sha16}`)
    console.log(`summary: ${exp.runDir}/summary.json`)
  }
  return 0
}
