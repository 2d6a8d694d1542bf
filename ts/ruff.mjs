#!/usr/bin/env node
// `npm run lint:py`: run ruff (the Python linter) with the given arguments, wherever setup put it:
// `ruff` on PATH, else `python3 -m ruff` (pip installs it as a module too), else the system
// python's. Plain JavaScript, like setup.mjs, which imports findRuff to decide whether to install.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const RUFF_VERSION = '0.17.6'
const CANDIDATES = [['ruff'], ['python3', '-m', 'ruff'], ['/usr/bin/python3', '-m', 'ruff']]

/** The command (argv prefix) that runs ruff here, or null. */
export function findRuff() {
  for (const cmd of CANDIDATES) {
    const r = spawnSync(cmd[0], [...cmd.slice(1), '--version'], { encoding: 'utf8' })
    if (r.status === 0 && /^ruff \d/.test(r.stdout)) return cmd
  }
  return null
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const cmd = findRuff()
  if (!cmd) {
    console.error('ruff not found (neither `ruff` nor `python3 -m ruff`): run `npm run setup`')
    process.exit(1)
  }
  const r = spawnSync(cmd[0], [...cmd.slice(1), ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}
