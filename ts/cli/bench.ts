// `prcl bench <name> [--json] [--save]`: benchmark programs live in bench/; results saved with --save
// go to bench/results/<name>.jsonl, one line per run, with the machine they ran on.
import { appendFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT } from '../paths.ts'
import { UsageError } from './usage.ts'

export async function bench(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { json: { type: 'boolean' }, save: { type: 'boolean' }, transport: { type: 'string' }, baseline: { type: 'boolean' } },
  })
  const [name] = positionals
  if (name !== 'wire') throw new UsageError(`unknown benchmark '${name ?? ''}' (available: wire)`)
  const { wireBench, wireTable } = await import('../../bench/wire.ts')
  const result = await wireBench({ transport: values.transport, baseline: values.baseline })
  if (values.save) {
    const dir = join(ROOT, 'bench', 'results')
    mkdirSync(dir, { recursive: true })
    appendFileSync(join(dir, `${name}.jsonl`), JSON.stringify(result) + '\n')
  }
  console.log(values.json ? JSON.stringify(result) : wireTable(result))
  return 0
}
