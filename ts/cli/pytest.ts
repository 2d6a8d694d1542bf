// `prcl pytest [args]`: the Python tests, run by the interpreter the worker uses.
import { spawn } from 'node:child_process'
import { PY_DIR, ROOT } from '../paths.ts'
import { findPython } from '../worker/python.ts'

export async function pytest(args: string[]): Promise<number> {
  const { python } = await findPython()
  const child = spawn(python, ['-m', 'pytest', 'py/tests', ...args], {
    cwd: ROOT, stdio: 'inherit', env: { ...process.env, PYTHONPATH: PY_DIR },
  })
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))))
}
