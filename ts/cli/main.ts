// Entry point of the `prcl` command line.
import { parseArgs } from 'node:util'
import { schemaDrift, writeSchemas } from './schemas.ts'
import { exitCleanlyOnSignals } from './signals.ts'
import { UsageError } from './usage.ts'

const USAGE = `usage: prcl <command> [options]

commands:
  demo [--json]          the CPU demo: synthetic data, supervised-only vs PRCL over 3 seeds
  train --config <preset|file> [--set path=value]... [--run-dir DIR] | --resume DIR
  eval --run DIR [--checkpoint best|latest] [--model teacher|student|both]
  predict --run DIR --out DIR IMAGE...   class maps (and --var σ² maps) as PNGs
  synth --out DIR        write the synthetic dataset (VOC layout)
  split --list FILE --labeled N --out DIR [--seed S] [--mode random|class-balanced --labels DIR]
                         a seeded labeled/unlabeled split of your own (PRCL-style files)
  doctor [--json]        find Python, start a worker, print what it says
  schemas [--check]      write schemas/*.json from the TypeScript types (--check: fail on drift)
  repl                   TypeScript REPL with a connected worker in scope
  bench <wire|prcl-loss|step> [--json] [--save]   benchmarks (bench/results/)
  pytest [args]          run the Python tests with the worker's interpreter
`


async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'schemas': {
      const { values } = parseArgs({ args: rest, options: { check: { type: 'boolean' } }, strict: true })
      if (values.check) {
        const drift = schemaDrift()
        if (drift.length > 0) {
          console.error(`schemas/ is out of date with the types in ts/: ${drift.join(', ')}\nrun: npx prcl schemas`)
          return 1
        }
        console.log('schemas/ matches the types')
        return 0
      }
      console.log(`wrote ${writeSchemas().map((f) => `schemas/${f}`).join(', ')}`)
      return 0
    }
    case 'train':
      return (await import('./train.ts')).train(rest)
    case 'eval':
      return (await import('./eval.ts')).evalCommand(rest)
    case 'predict':
      return (await import('./predict.ts')).predictCommand(rest)
    case 'synth':
      return (await import('./synth.ts')).synth(rest)
    case 'split':
      return (await import('./split.ts')).split(rest)
    case 'demo':
      return (await import('./demo.ts')).demo(rest)
    case 'doctor':
      return (await import('./doctor.ts')).doctor(rest)
    case 'repl':
      return (await import('./repl.ts')).repl(rest)
    case 'bench':
      return (await import('./bench.ts')).bench(rest)
    case 'pytest':
      return (await import('./pytest.ts')).pytest(rest)
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE)
      return command === undefined ? 1 : 0
    default:
      throw new UsageError(`unknown command '${command}'`)
  }
}

exitCleanlyOnSignals()
try {
  process.exitCode = await main(process.argv.slice(2))
} catch (e) {
  if ((e as Error).name === 'ConfigError') {
    console.error(`prcl: ${(e as Error).message}`)
    process.exitCode = 2
  } else if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`prcl: ${(e as Error).message}\n\n${USAGE}`)
    process.exitCode = 2
  } else {
    console.error(e)
    process.exitCode = 1
  }
}
