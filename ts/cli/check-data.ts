// `prcl check-data --config <preset|file> [--set path=value …] [--level full|fast] [--threads N] [--json]`:
// the data pre-flight over every image and label the configuration lists (labeled, unlabeled and
// val), all problems reported at once, grouped by kind with counts and file names (ts/data/check.ts).
import { loadConfig } from '../config/load.ts'
import { checkDataConfig } from '../experiment/data.ts'
import { parseCommand } from './args.ts'
import { checkData as CHECK } from './commands.ts'

export async function checkDataCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(CHECK, args)
  const cfg = loadConfig(values.config, values.set)
  const tty = process.stderr.isTTY && !values.json
  let shown = 0
  const progress = tty
    ? (done: number, total: number) => {
      const now = Date.now()
      if (done < total && now - shown < 250) return
      shown = now
      process.stderr.write(`\rchecking ${done.toLocaleString('en-US')} / ${total.toLocaleString('en-US')}${done === total ? '\n' : ''}`)
    }
    : undefined
  const started = Date.now()
  const r = await checkDataConfig(cfg, { level: values.level, threads: values.threads, progress })
  const seconds = (Date.now() - started) / 1000
  if (values.json) {
    const { findings, counts, errors, notes, level } = r.report
    console.log(JSON.stringify({ ok: r.ok, root: r.root, dataset: r.dataset, level, counts, errors: errors + r.problems.length, notes, seconds, lists: r.problems, findings }))
  } else {
    console.log(r.text)
    console.log(r.ok
      ? `ok (${seconds.toFixed(1)} s)`
      : `fix or remove these files, or train with --set data.skip_bad_samples=true to leave their samples out (${seconds.toFixed(1)} s)`)
  }
  return r.ok ? 0 : 1
}
