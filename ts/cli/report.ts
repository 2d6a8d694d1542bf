// `prcl report RUN... [--out report.html] [--title TEXT] [--screenshot PNG]` (ts/report/html.ts).
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { openReport } from '../report/browser.ts'
import { reportData, reportHtml } from '../report/html.ts'
import { parseCommand } from './args.ts'
import { report as REPORT } from './commands.ts'
import { CommandError } from './usage.ts'

export async function reportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(REPORT, args)
  const out = resolve(values.out)
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, reportHtml(reportData(positionals, values.title)))
  console.log(out)
  if (values.screenshot) {
    const check = await openReport(out, { screenshot: resolve(values.screenshot), height: 1500, fullPage: false })
    if (check.errors.length) throw new CommandError(`the report shows errors in the browser: ${check.errors.join('; ')}`)
    console.log(resolve(values.screenshot))
  }
  return 0
}
