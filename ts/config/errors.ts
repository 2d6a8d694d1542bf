// The one kind of configuration error: every problem names the setting's path, the value found
// and what is allowed, whatever the route (preset, file, `extends`, `--set`, the API).

export interface ConfigIssue {
  /** Dotted path of the setting, e.g. `loss.terms.1.params.threshold`; '' for the whole document. */
  path: string
  /** What was found (undefined: missing). */
  value?: unknown
  /** What is allowed, as a sentence fragment: "must be one of 'whole', 'sliding'". */
  expected: string
}

const SHOWN = 8

export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly issues: ConfigIssue[]

  constructor(readonly source: string, issues: ConfigIssue[]) {
    const lines = issues.slice(0, SHOWN).map((i) => `  ${formatIssue(i)}`)
    if (issues.length > SHOWN) lines.push(`  … and ${issues.length - SHOWN} more`)
    super(`${source}: invalid configuration\n${lines.join('\n')}`)
    this.issues = issues
  }
}

export function formatIssue(i: ConfigIssue): string {
  const where = i.path || '(top level)'
  return 'value' in i ? `${where} = ${show(i.value)}: ${i.expected}` : `${where}: ${i.expected}`
}

/** A value as a reader wants it in one line: JSON, cut short. */
export function show(value: unknown): string {
  if (value === undefined) return 'missing'
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value)
  let text: string
  try {
    text = JSON.stringify(value) ?? String(value)
  } catch {
    text = String(value)
  }
  return text.length > 80 ? `${text.slice(0, 77)}…` : text
}

/** 'a', 'b' or 'c', for messages. */
export function listOf(values: readonly unknown[]): string {
  return values.map((v) => (typeof v === 'string' ? `'${v}'` : String(v))).join(', ')
}
