// `prcl train --config <preset|file> [--set path=value …] [--run-dir DIR] [--record FILE]`
// `prcl train --resume DIR [--config …] [--set …] [--allow-changes]`: the configuration asked for
// (--config, else the run's config.json, with --set) must be the run's, but for world.* and, with
// --allow-changes, sampling.epochs, eval.every_epochs and checkpoint.every_steps.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../config/load.ts'
import { Experiment } from '../experiment/run.ts'
import { parseCommand } from './args.ts'
import { train as TRAIN } from './commands.ts'
import { onFirstSignal, signalExitCode } from './signals.ts'
import { UsageError } from './usage.ts'

export async function train(args: string[]): Promise<number> {
  const { values } = parseCommand(TRAIN, args)
  if (!values.config && !values.resume) throw new UsageError('train needs --config <preset or file> (or --resume <run dir>)', 'train')
  const stopAfter = values['stop-after']
  if (values.resume && values['run-dir']) throw new UsageError('--resume names the run directory to continue; --run-dir is for a new run: pass one of them', 'train')
  if (values['allow-changes'] && !values.resume) throw new UsageError('--allow-changes goes with --resume', 'train')
  const cfg = values.config ? loadConfig(values.config, values.set) : undefined
  // On --resume without --config, --set applies to the run's own config.json.
  const exp = new Experiment(cfg, {
    runDir: values.resume ?? values['run-dir'], resume: !!values.resume, allowChanges: values['allow-changes'], stopAfter, record: values.record, trustWeights: values['trust-weights'],
    set: values.resume && !values.config ? values.set : undefined,
  })
  if (!values.json) {
    // Named once it exists (a default name gets a suffix when another run took it).
    exp.once('run-dir', (dir: string) => console.log(`run directory: ${dir}`))
    console.log(JSON.stringify(exp.config, null, 2))
  }
  let signal: NodeJS.Signals | null = null
  const release = onFirstSignal((sig) => { signal = sig; exp.stop(sig) })
  const summary = await exp.run().finally(release)
  if (signal) {
    const ck = join(exp.runDir, 'checkpoints', 'latest')
    console.error(`stopped by ${signal} after step ${summary.steps}${existsSync(ck) ? `; the checkpoint is in ${ck}` : ' (no checkpoint: no step had finished)'}`)
    console.error(`resume with: prcl train --resume ${exp.runDir}`)
    return signalExitCode(signal)
  }
  if (values.json) console.log(JSON.stringify(summary))
  else {
    const pct = (x: number | null | undefined) => (typeof x === 'number' && Number.isFinite(x) ? (x * 100).toFixed(2) : '—')
    console.log(`done: ${summary.steps} steps in ${summary.wall_minutes.toFixed(1)} min; ` +
      `last mIoU ${pct(summary.last?.miou)} (epoch ${summary.last?.epoch ?? '—'}), best ${pct(summary.best?.miou)} (epoch ${summary.best?.epoch ?? '—'})`)
    console.log(`labeled split ${summary.splits.labeled.path} sha256 ${summary.splits.labeled.sha16}`)
    console.log(`summary: ${exp.runDir}/summary.json`)
  }
  return 0
}
