// Starts one real Python worker for the whole run. The worker connects to an endpoint that
// each suite binds in turn (Worker.attach); it says hello to every new driver.
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { PY_DIR, ROOT, SCHEMAS_DIR } from '../../ts/paths.ts'
import { findPython } from '../../ts/worker/python.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    workerEndpoint: string
    python: string
  }
}

export default async function setup(project: TestProject) {
  const { python } = await findPython()
  const file = join(tmpdir(), `prcl-vitest-${process.pid}.sock`)
  const endpoint = `ipc://${file}`
  const child = spawn(python, ['-m', 'prcl_worker', '--connect', endpoint, '--parent-pid', String(process.pid),
    '--schemas', SCHEMAS_DIR, '--device', 'cpu', '--quiet'], {
    cwd: ROOT,
    env: { ...process.env, PYTHONPATH: PY_DIR },
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  project.provide('workerEndpoint', endpoint)
  project.provide('python', python)
  return async () => {
    child.kill('SIGTERM')
    const t = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(t)
    rmSync(file, { force: true })
  }
}
