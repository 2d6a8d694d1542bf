// The run directory named by `eval --run` / `predict --run`, checked before anything else, so
// that a typo or an unfinished run is named as such (not as a missing checkpoint manifest).
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { CommandError } from './usage.ts'

export function checkRunDir(run: string, checkpoint: string): void {
  const st = statSync(run, { throwIfNoEntry: false })
  if (!st) throw new CommandError(`run directory ${run} does not exist; pass --run a directory that prcl train made (it prints it: runs/<name>-<time>)`)
  if (!st.isDirectory()) throw new CommandError(`--run ${run} is not a directory; pass the run directory that prcl train made`)
  if (!existsSync(join(run, 'config.json'))) throw new CommandError(`${run} is not a run directory (it has no config.json); pass the directory that prcl train made`)
  const dir = join(run, 'checkpoints', checkpoint)
  if (!existsSync(dir)) {
    const ck = join(run, 'checkpoints')
    const have = existsSync(ck) ? readdirSync(ck).filter((n) => !n.startsWith('.')) : []
    throw new CommandError(`${run} has no '${checkpoint}' checkpoint (${dir} does not exist)` +
      (have.length ? `; it has: ${have.join(', ')} (pass --checkpoint ${have.find((n) => n === 'best' || n === 'latest') ?? have[0]})`
        : '; the run stopped before its first checkpoint was written: resume it with prcl train --resume ' + run))
  }
}
