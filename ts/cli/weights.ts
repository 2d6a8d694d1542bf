// `prcl weights list` / `prcl weights fetch BACKBONE...`: the ImageNet files model.pretrained:
// imagenet starts from, where they are found, and a checked download. `prcl weights export --run
// DIR --out FILE`: a trained run's trunk as a file model.pretrained can name.
import { resolve } from 'node:path'
import { IMAGENET } from '../weights/catalog.ts'
import { fetchWeights, type FetchResult } from '../weights/fetch.ts'
import { locateWeights, weightsDirs } from '../weights/resolve.ts'
import { parseCommand } from './args.ts'
import { weights as WEIGHTS } from './commands.ts'
import { CommandError, UsageError } from './usage.ts'

export async function weights(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(WEIGHTS, args)
  const [action, ...names] = positionals
  const dirs = weightsDirs()
  if (action === 'list') {
    if (names.length) throw new UsageError(`list takes no arguments (got ${names.join(' ')})`, 'weights')
    const rows = locateWeights(dirs)
    if (values.json) console.log(JSON.stringify({ dirs, weights: rows }))
    else {
      console.log(`looked for in: ${dirs.join(', ')}`)
      for (const r of rows) console.log(`${r.backbone.padEnd(10)} ${r.found ?? 'missing'}\n           ${r.url}\n           sha256 ${r.sha256}`)
    }
    return 0
  }
  if (action === 'export') {
    if (names.length) throw new UsageError(`export takes no arguments (got ${names.join(' ')}); name the run with --run`, 'weights')
    if (!values.run || !values.out) throw new UsageError('export needs --run DIR and --out FILE', 'weights')
    const { exportBackbone } = await import('../experiment/export.ts')
    const r = await exportBackbone({ run: values.run, out: values.out, checkpoint: values.checkpoint, model: values.model })
      .catch((e: Error) => { throw new CommandError(e.message) })
    if (values.json) console.log(JSON.stringify(r))
    else console.log(`wrote ${r.out}: the ${r.model}'s ${r.backbone} trunk (width ${r.width}) at step ${r.step}, ${r.tensors} tensors, sha256 ${r.sha256}`)
    return 0
  }
  if (action !== 'fetch') throw new UsageError(`unknown action '${action ?? ''}' (list, fetch or export)`, 'weights')
  if (!names.length) throw new UsageError('fetch: name a backbone (' + Object.keys(IMAGENET).join(', ') + ')', 'weights')
  const unknown = names.filter((n) => !Object.hasOwn(IMAGENET, n))
  if (unknown.length) throw new UsageError(`no ImageNet weights are known for ${unknown.join(', ')} (known: ${Object.keys(IMAGENET).join(', ')})`, 'weights')
  const dir = values.dir ? resolve(values.dir) : dirs[0]!
  const results: FetchResult[] = []
  for (const n of names) {
    let shown = -1
    const r = await fetchWeights(IMAGENET[n]!, dir, {
      mirror: values.mirror,
      progress: values.json ? undefined : (bytes, total) => {
        const pct = total ? Math.floor((100 * bytes) / total) : Math.floor(bytes / 2 ** 20)
        if (pct !== shown && pct % 10 === 0) { shown = pct; process.stderr.write(`${n}: ${total ? `${pct}%` : `${pct} MiB`}\n`) }
      },
    }).catch((e: Error) => { throw new CommandError(e.message) })
    results.push(r)
    if (!values.json) console.log(`${r.downloaded ? 'fetched' : 'already there'}: ${r.path} (sha256 ${r.sha256})`)
  }
  if (values.json) console.log(JSON.stringify({ dir, fetched: results }))
  return 0
}
