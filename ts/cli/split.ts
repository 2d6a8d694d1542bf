// `prcl split --list FILE --labeled N --out DIR [--seed S] [--mode random|class-balanced]
//   [--labels DIR] [--min-classes K]`: a seeded labeled/unlabeled split of the ids in FILE (any
// split format), written as PRCL-style bare-id files with their identities printed. A split of
// one's own is a different benchmark from the published ones: its hash goes with every result.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { labelClasses } from '../data/label-classes.ts'
import { generateSplit, identityOfText, readSplit } from '../data/splits.ts'
import { parseCommand } from './args.ts'
import { split as SPLIT } from './commands.ts'
import { UsageError } from './usage.ts'

export async function split(args: string[]): Promise<number> {
  const { values } = parseCommand(SPLIT, args)
  const { labeled: count, seed, mode } = values
  if (mode === 'class-balanced' && !values.labels) throw new UsageError('--mode class-balanced needs --labels DIR (label PNGs named <id>.png)', 'split')
  const ids = (await readSplit(resolve(values.list))).map((e) => e.id)
  const labels = values.labels ? resolve(values.labels) : ''
  const result = mode === 'random'
    ? await generateSplit({ mode, ids, count, seed })
    : await generateSplit({
      mode, ids, count, seed, minClasses: values['min-classes'],
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
