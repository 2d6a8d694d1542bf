// `prcl split --list FILE --labeled N --out DIR [--seed S] [--mode random|class-balanced]
//   [--labels DIR] [--min-classes K]`: a seeded labeled/unlabeled split of the ids in FILE (any
// split format), written as PRCL-style bare-id files with their identities printed. A split of
// one's own is a different benchmark from the published ones: its hash goes with every result.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { labelClasses } from '../data/label-classes.ts'
import { generateSplit, identityOfText, readSplit } from '../data/splits.ts'
import { UsageError } from './usage.ts'

export async function split(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, strict: true,
    options: {
      list: { type: 'string' }, labeled: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' },
      mode: { type: 'string' }, labels: { type: 'string' }, 'min-classes': { type: 'string' }, json: { type: 'boolean' },
    },
  })
  if (!values.list) throw new UsageError('split needs --list FILE (the ids to split: any split file, e.g. train_aug.txt)')
  if (!values.out) throw new UsageError('split needs --out DIR')
  const int = (name: string, v: string | undefined, fallback?: number) => {
    if (v === undefined) {
      if (fallback === undefined) throw new UsageError(`split needs --${name} N`)
      return fallback
    }
    const n = Number(v)
    if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer, got '${v}'`)
    return n
  }
  const count = int('labeled', values.labeled)
  const seed = int('seed', values.seed, 0)
  const mode = values.mode ?? 'random'
  if (mode !== 'random' && mode !== 'class-balanced') throw new UsageError(`--mode must be random or class-balanced, got '${mode}'`)
  if (mode === 'class-balanced' && !values.labels) throw new UsageError('--mode class-balanced needs --labels DIR (label PNGs named <id>.png)')
  const ids = (await readSplit(resolve(values.list))).map((e) => e.id)
  const labels = values.labels ? resolve(values.labels) : ''
  const result = mode === 'random'
    ? await generateSplit({ mode, ids, count, seed })
    : await generateSplit({
      mode, ids, count, seed, minClasses: int('min-classes', values['min-classes'], 1),
      classesOf: (id) => labelClasses(join(labels, `${id}.png`), null),
    })
  const out = resolve(values.out)
  mkdirSync(out, { recursive: true })
  const files = { labeled: join(out, 'labeled_filename.txt'), unlabeled: join(out, 'unlabeled_filename.txt') }
  const report: Record<string, { file: string; lines: number; sha16: string }> = {}
  for (const which of ['labeled', 'unlabeled'] as const) {
    const text = result[which].join('\n')
    writeFileSync(files[which], text)
    const id = identityOfText(text, files[which])
    report[which] = { file: files[which], lines: id.lines, sha16: id.sha16 }
  }
  if (values.json) console.log(JSON.stringify({ mode, seed, ...report }))
  else for (const [which, r] of Object.entries(report)) console.log(`${which.padEnd(9)} ${String(r.lines).padStart(6)} ids  sha256 ${r.sha16}…  ${r.file}`)
  return 0
}
