// One declaration per command (ts/cli/commands.ts) gives both its `util.parseArgs` options and its
// help text, so the usage a user reads and what the parser accepts cannot drift apart.
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { UsageError } from './usage.ts'

/** How a string option's value is checked and converted. */
export type ValueKind =
  | 'int' // any integer
  | 'count' // an integer ≥ 0
  | 'positive' // an integer ≥ 1
  | 'number' // a finite number
  | 'counts' // comma-separated integers ≥ 0

export interface OptionDecl {
  type: 'string' | 'boolean'
  description: string
  /** Placeholder for the value in help text (string options), e.g. 'DIR'. */
  value?: string
  multiple?: boolean
  short?: string
  required?: boolean
  choices?: readonly string[]
  kind?: ValueKind
  /** A string option's value when absent (checked and converted like a given value). */
  default?: string
}

export interface CommandDecl {
  name: string
  /** One line for the list of commands. */
  summary: string
  options: Readonly<Record<string, OptionDecl>>
  /** Positional arguments as they appear in the synopsis, e.g. 'IMAGE...'; absent: none taken. */
  positionals?: string
  /** Needs at least one positional argument. */
  positionalsRequired?: boolean
  /** Arguments go through untouched to another program (pytest); only a leading --help is ours. */
  passThrough?: boolean
  /** Extra lines after the options (constraints between options, examples). */
  notes?: readonly string[]
}

type Scalar<D> = D extends { type: 'boolean' } ? boolean
  : D extends { kind: 'counts' } ? number[]
  : D extends { kind: ValueKind } ? number
  : D extends { choices: readonly (infer C)[] } ? C
  : string
type Value<D> = D extends { multiple: true } ? Array<Scalar<D>> : Scalar<D>
type Absent<D> = D extends { type: 'boolean' } ? never : D extends { multiple: true } ? never
  : D extends { default: string } ? never : D extends { required: true } ? never : undefined

export type Values<C extends CommandDecl> = { -readonly [K in keyof C['options']]: Value<C['options'][K]> | Absent<C['options'][K]> }

export interface Parsed<C extends CommandDecl> {
  values: Values<C>
  positionals: string[]
}

/** `--help` was asked for: main prints the command's help and exits 0. */
export class HelpRequested extends Error {
  override name = 'HelpRequested'
  constructor(readonly command: CommandDecl) { super(`help for ${command.name}`) }
}

const HELP: OptionDecl = { type: 'boolean', short: 'h', description: 'show this help' }

/** Declares a command, keeping the literal types of its options for `Values`. */
export function command<const C extends CommandDecl>(decl: C): C {
  for (const name of Object.keys(decl.options)) {
    if (name === 'help') throw new Error(`${decl.name}: --help is added to every command`)
  }
  return decl
}

function flag(name: string, d: OptionDecl): string {
  return d.type === 'boolean' ? `--${name}` : `--${name} ${d.value ?? (d.choices ? d.choices.join('|') : 'VALUE')}`
}

/** `prcl train [options]`, `prcl split --list FILE --labeled N --out DIR [options] …`. */
export function synopsis(c: CommandDecl): string {
  const parts = [`prcl ${c.name}`]
  for (const [name, d] of Object.entries(c.options)) if (d.required) parts.push(flag(name, d))
  if (c.passThrough) parts.push('[pytest arguments]')
  else parts.push('[options]')
  if (c.positionals) parts.push(c.positionalsRequired ? c.positionals : `[${c.positionals}]`)
  return parts.join(' ')
}

/** The text of `prcl <command> --help`. */
export function helpText(c: CommandDecl): string {
  const rows: Array<[string, string]> = []
  for (const [name, d] of Object.entries({ ...c.options, help: HELP })) {
    const left = (d.short ? `-${d.short}, ` : '    ') + flag(name, d) + (d.multiple ? ' ...' : '')
    let right = d.description
    if (d.choices && d.value) right += ` (${d.choices.join(', ')})`
    if (d.default !== undefined) right += ` [default: ${d.default}]`
    if (d.required) right += ' (required)'
    rows.push([left, right])
  }
  const width = Math.min(Math.max(...rows.map(([l]) => l.length)) + 2, 34)
  const lines = [`usage: ${synopsis(c)}`, '', c.summary, '', 'options:']
  for (const [l, r] of rows) lines.push(l.length + 2 > width ? `  ${l}\n  ${' '.repeat(width)}${r}` : `  ${l.padEnd(width)}${r}`)
  if (c.notes?.length) lines.push('', ...c.notes)
  return lines.join('\n') + '\n'
}

/** The text of `prcl --help`: each command's name and summary. */
export function usageText(commands: readonly CommandDecl[]): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2
  return [
    'usage: prcl <command> [options]',
    '       prcl <command> --help | prcl --help | prcl --version',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    "run 'prcl <command> --help' for a command's options; --debug (or PRCL_DEBUG=1) adds an error's stack trace",
  ].join('\n') + '\n'
}

/** A parseArgs error as one line that names the option (`command`: whose usage to print). */
export function usageFromParseError(e: Error & { code?: string }, c?: CommandDecl): UsageError {
  const m = e.message
  let text = m.charAt(0).toLowerCase() + m.slice(1)
  let r: RegExpExecArray | null
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && (r = /Unknown option '([^']+)'/.exec(m))) {
    text = `unknown option '${r[1]}'`
  } else if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' && (r = /Unexpected argument '([^']*)'/.exec(m))) {
    text = `unexpected argument '${r[1]}'` + (c ? ` (${c.name} takes no positional arguments)` : '')
  } else if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && (r = /Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/.exec(m))) {
    const name = r[1]!.slice(2)
    const d = c?.options[name]
    text = `option '${r[1]}' needs a value` + (d?.value ? ` (${d.value})` : '')
  }
  return new UsageError(text, c?.name)
}

function convert(c: CommandDecl, name: string, d: OptionDecl, v: string): unknown {
  const bad = (what: string) => new UsageError(`--${name} must be ${what}, got '${v}'`, c.name)
  if (d.choices && !d.choices.includes(v)) throw bad(`one of ${d.choices.join(', ')}`)
  if (!d.kind) return v
  const num = (s: string, what: string, ok: (n: number) => boolean) => {
    const n = s.trim() === '' ? NaN : Number(s)
    if (!ok(n)) throw bad(what)
    return n
  }
  switch (d.kind) {
    case 'int': return num(v, 'an integer', Number.isSafeInteger)
    case 'count': return num(v, 'a non-negative integer', (n) => Number.isSafeInteger(n) && n >= 0)
    case 'positive': return num(v, 'a positive integer', (n) => Number.isSafeInteger(n) && n > 0)
    case 'number': return num(v, 'a number', Number.isFinite)
    case 'counts': return v.split(',').map((s) => num(s, 'comma-separated non-negative integers', (n) => Number.isSafeInteger(n) && n >= 0))
  }
}

/** Parses a command's arguments with `util.parseArgs` from its declaration; values are checked
 *  and converted (kinds, choices, required). Throws HelpRequested for --help/-h and UsageError
 *  (naming the option, carrying the command) for anything the declaration does not accept. */
export function parseCommand<const C extends CommandDecl>(c: C, args: string[]): Parsed<C> {
  if (c.passThrough) return parsePassThrough(c, args) as Parsed<C>
  const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } }
  for (const [name, d] of Object.entries(c.options)) {
    options[name] = { type: d.type, ...(d.multiple ? { multiple: true } : {}), ...(d.short ? { short: d.short } : {}) }
  }
  let parsed
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: c.positionals !== undefined })
  } catch (e) {
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) throw usageFromParseError(e as Error, c)
    throw e
  }
  const raw = parsed.values as Record<string, string | boolean | Array<string | boolean> | undefined>
  if (raw.help) throw new HelpRequested(c)
  const values: Record<string, unknown> = {}
  for (const [name, d] of Object.entries(c.options)) {
    const v = raw[name] ?? d.default
    if (d.type === 'boolean') values[name] = d.multiple ? (v ?? []) : v === true
    else if (v === undefined) {
      if (d.required) throw new UsageError(`missing ${flag(name, d)}`, c.name)
      values[name] = d.multiple ? [] : undefined
    } else if (Array.isArray(v)) values[name] = v.map((x) => convert(c, name, d, String(x)))
    else values[name] = convert(c, name, d, String(v))
  }
  if (c.positionalsRequired && parsed.positionals.length === 0) throw new UsageError(`missing ${c.positionals}`, c.name)
  return { values: values as Values<C>, positionals: parsed.positionals }
}

/** For commands that hand their arguments to another program: `--help`/`-h` before any `--` is
 *  ours; a leading `--` is dropped, so `prcl pytest -- --help` reaches pytest. */
function parsePassThrough(c: CommandDecl, args: string[]): Parsed<CommandDecl> {
  const { tokens } = parseArgs({ args, options: { help: { type: 'boolean', short: 'h' } }, strict: false, allowPositionals: true, tokens: true })
  for (const t of tokens) {
    if (t.kind === 'option-terminator') break
    if (t.kind === 'option' && t.name === 'help' && (t.rawName === '--help' || t.rawName === '-h') && args[t.index] === t.rawName) {
      throw new HelpRequested(c)
    }
  }
  return { values: {} as Values<CommandDecl>, positionals: args[0] === '--' ? args.slice(1) : [...args] }
}
