// `prcl pytest [args]`: the Python tests, run by the interpreter the worker uses. Every argument
// goes to pytest, except a --help of our own (`prcl pytest -- --help` for pytest's).
import { spawn } from 'node:child_process'
import { PY_DIR, ROOT } from '../paths.ts'
import { findPython } from '../worker/python.ts'
import { parseCommand } from './args.ts'
import { pytest as PYTEST } from './commands.ts'

export async function pytest(args: string[]): Promise<number> {
  const { positionals: forwarded } = parseCommand(PYTEST, args)
  const { python } = await findPython()
  // Test files or node ids named: those only; otherwise the whole suite.
  const named = forwarded.some((a) => !a.startsWith('-') && /^py\/tests\b|\.py(::|$)/.test(a))
  const child = spawn(python, ['-m', 'pytest', ...(named ? [] : ['py/tests']), ...forwarded], {
    cwd: ROOT, stdio: 'inherit', env: { ...process.env, PYTHONPATH: PY_DIR },
  })
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))))
}
