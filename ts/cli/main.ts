// Entry point of the `prcl` command line. Options and help come from the declarations in
// commands.ts; each command's module is loaded only when it runs.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT } from '../paths.ts'
import { HelpRequested, helpText, usageFromParseError, usageText } from './args.ts'
import { COMMANDS, findCommand } from './commands.ts'
import { exitCleanlyOnSignals } from './signals.ts'
import { CommandError, UsageError } from './usage.ts'

type Run = (args: string[]) => Promise<number>

const RUN: Record<string, Run> = {
  demo: async (a) => (await import('./demo.ts')).demo(a),
  train: async (a) => (await import('./train.ts')).train(a),
  sweep: async (a) => (await import('./sweep.ts')).sweepCommand(a),
  'check-data': async (a) => (await import('./check-data.ts')).checkDataCommand(a),
  report: async (a) => (await import('./report.ts')).reportCommand(a),
  eval: async (a) => (await import('./eval.ts')).evalCommand(a),
  predict: async (a) => (await import('./predict.ts')).predictCommand(a),
  synth: async (a) => (await import('./synth.ts')).synth(a),
  split: async (a) => (await import('./split.ts')).split(a),
  keys: async (a) => (await import('./keys.ts')).keysCommand(a),
  doctor: async (a) => (await import('./doctor.ts')).doctor(a),
  schemas: async (a) => (await import('./schemas.ts')).schemasCommand(a),
  repl: async (a) => (await import('./repl.ts')).repl(a),
  bench: async (a) => (await import('./bench.ts')).bench(a),
  weights: async (a) => (await import('./weights.ts')).weights(a),
  pytest: async (a) => (await import('./pytest.ts')).pytest(a),
}

function version(): string {
  return (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
}

/** The command being run, for naming it in errors. */
let current: string | undefined

/** `--debug` (before the command, or among a command's own options) or PRCL_DEBUG=1: errors
 *  come with their stack. A pass-through command (pytest) keeps a `--debug` after its name. */
let debug = process.env.PRCL_DEBUG === '1'

function takeDebug(argv: string[]): string[] {
  const out: string[] = []
  for (const [i, a] of argv.entries()) {
    if (a === '--') return [...out, ...argv.slice(i)]
    if (a === '--debug') { debug = true; continue }
    out.push(a)
    if (out.length === 1 && findCommand(a)?.passThrough) return [...out, ...argv.slice(i + 1)]
  }
  return out
}

function safeJson(x: unknown): string {
  try { return JSON.stringify(x) ?? String(x) } catch { return String(x) }
}

/** An error's message, then each message of its cause chain that it does not already include. */
function describeError(e: unknown): string {
  const parts: string[] = []
  const seen = new Set<unknown>()
  let cur: unknown = e
  while (cur !== undefined && cur !== null && !seen.has(cur) && parts.length < 8) {
    seen.add(cur)
    const msg = cur instanceof Error ? cur.message : typeof cur === 'string' ? cur : safeJson(cur)
    if (msg && !parts.some((p) => p.includes(msg))) parts.push(msg)
    cur = cur instanceof Error ? cur.cause : undefined
  }
  return parts.join('\n  caused by: ') || String(e)
}

function stackOf(e: unknown): string {
  const lines: string[] = []
  let cur: unknown = e
  for (let depth = 0; cur instanceof Error && depth < 8; depth++, cur = cur.cause) {
    lines.push(`${depth ? 'caused by: ' : ''}${cur.stack ?? cur.message}`)
  }
  return lines.join('\n')
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = takeDebug(argv)
  if (first === undefined) {
    process.stdout.write(usageText(COMMANDS))
    return 1
  }
  if (first.startsWith('-')) {
    const { values } = parseArgs({ args: argv, strict: true, options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'V' } } })
    if (values.version) console.log(version())
    else process.stdout.write(usageText(COMMANDS))
    return 0
  }
  if (first === 'help') {
    const { positionals } = parseArgs({ args: rest, strict: true, allowPositionals: true })
    const c = positionals[0] === undefined ? undefined : findCommand(positionals[0])
    if (positionals[0] !== undefined && !c) throw new UsageError(`unknown command '${positionals[0]}'`)
    process.stdout.write(c ? helpText(c) : usageText(COMMANDS))
    return 0
  }
  const c = findCommand(first)
  const run = c && RUN[c.name]
  if (!c || !run) throw new UsageError(`unknown command '${first}'`)
  current = c.name
  return run(rest)
}

exitCleanlyOnSignals()
try {
  process.exitCode = await main(process.argv.slice(2))
} catch (e) {
  const code = (e as { code?: string }).code
  if (e instanceof HelpRequested) {
    process.stdout.write(helpText(e.command))
    process.exitCode = 0
  } else if (e instanceof CommandError) {
    console.error(`prcl${current ? ` ${current}` : ''}: ${e.message}`)
    process.exitCode = 1
  } else if ((e as Error).name === 'ConfigError') {
    console.error(`prcl: ${(e as Error).message}`)
    process.exitCode = 2
  } else if (e instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
    const c = findCommand((e as UsageError).command ?? current ?? '')
    const msg = e instanceof UsageError ? e.message : usageFromParseError(e as Error, c).message
    console.error(c ? `prcl ${c.name}: ${msg}\n\n${helpText(c)}` : `prcl: ${msg}\n\n${usageText(COMMANDS)}`)
    process.exitCode = 2
  } else {
    console.error(`prcl${current ? ` ${current}` : ''}: ${describeError(e)}`)
    process.exitCode = 1
  }
  if (debug && !(e instanceof HelpRequested)) console.error(stackOf(e))
}
