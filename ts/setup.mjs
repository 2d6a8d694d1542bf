#!/usr/bin/env node
// `npm run setup`: install whatever is missing, then show `prcl doctor` succeeding.
// Plain JavaScript on purpose: it runs before node_modules exist.
//
//   1. node modules: `npm ci` when node_modules is missing or older than package-lock.json;
//   2. the Python side, by the first route that fits:
//      - an interpreter that already has torch, pyzmq, msgpack, numpy, fastjsonschema, safetensors:
//        nothing to do;
//      - conda available: create/update the `prcl` env from environment.yml;
//      - Debian/Ubuntu as root: apt-get install Debian's python3-torch and friends, and pip-install
//        safetensors and tensorboard (which Debian 12 does not package) into that system python;
//      - otherwise: print the exact commands to run;
//   3. ruff (the Python linter `npm test` runs): Debian's `ruff` package where apt has one, else
//      pip (`python3 -m pip install ruff==RUFF_VERSION`, system python included);
//   4. tensorboard beside that interpreter (pip), and a headless chromium (apt) for the report's test;
//   5. `prcl doctor`.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RUFF_VERSION, findRuff } from './ruff.mjs'

// The worker's state files are safetensors (a format stable since 0.3; 0.4 on has abi3 wheels).
const SAFETENSORS = 'safetensors>=0.4'
const TENSORBOARD = 'tensorboard>=2.10'
const CHROMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const APT_PACKAGES = ['python3-torch', 'python3-torchvision', 'python3-zmq', 'python3-msgpack', 'python3-numpy',
  'python3-pil', 'python3-jsonschema', 'python3-fastjsonschema', 'python3-pytest', 'python3-venv', 'python3-pip']

function run(cmd, args, opts = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: ROOT, ...opts })
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`)
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed with exit code ${r.status}`)
}

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

function nodeModules() {
  const [major] = process.versions.node.split('.').map(Number)
  if (major < 20) throw new Error(`Node ${process.versions.node} is too old: prcl needs Node 20 or newer`)
  const lock = join(ROOT, 'package-lock.json')
  const marker = join(ROOT, 'node_modules', '.package-lock.json')
  if (!existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs) run('npm', ['ci', '--no-audit', '--no-fund'])
  else console.log('node modules: up to date')
}

/** The doctor's verdict as JSON (it finds the interpreter the same way the driver does). */
function doctorJson(env = process.env) {
  const r = spawnSync(process.execPath, [join(ROOT, 'ts/cli/prcl.mjs'), 'doctor', '--json'], { cwd: ROOT, env, encoding: 'utf8' })
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop())
  } catch {
    return { ok: false, error: (r.stderr || r.stdout || '').trim() }
  }
}

function condaRoute() {
  const conda = has('mamba') ? 'mamba' : has('conda') ? 'conda' : null
  if (!conda) return null
  const prefix = process.env.CONDA_PREFIX
  const envFile = join(ROOT, 'environment.yml')
  if (prefix && process.env.CONDA_DEFAULT_ENV && process.env.CONDA_DEFAULT_ENV !== 'base') {
    run(conda, ['env', 'update', '--prefix', prefix, '--file', envFile])
    return join(prefix, 'bin', 'python')
  }
  const base = execFileSync('conda', ['info', '--base'], { encoding: 'utf8' }).trim()
  const envPython = join(base, 'envs', 'prcl', 'bin', 'python')
  run(conda, ['env', existsSync(envPython) ? 'update' : 'create', '--name', 'prcl', '--file', envFile])
  console.log(`\nconda env 'prcl' is ready: \`conda activate prcl\` (or PRCL_PYTHON=${envPython}) before using prcl.`)
  return envPython
}

function aptRoute() {
  if (!existsSync('/etc/debian_version') || !has('apt-get')) return false
  if (process.getuid?.() !== 0) return false
  aptUpdate()
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...APT_PACKAGES], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  // Not packaged by Debian 12: the worker's state files are safetensors.
  if (!imports('/usr/bin/python3', 'safetensors')) pipInstall('/usr/bin/python3', [SAFETENSORS])
  return true
}

function imports(python, mod) {
  return spawnSync(python, ['-c', `import ${mod}`], { stdio: 'ignore' }).status === 0
}

/** tensorboard beside the worker's interpreter (to view runs; the tests read the event files back
 *  with its reader), by pip where that interpreter has pip. */
function tensorboard(python) {
  if (imports(python, 'tensorboard')) return console.log('tensorboard: installed')
  if (!hasPip(python)) return console.log(`tensorboard: not installed (${python} has no pip): pip install '${TENSORBOARD}' to view runs`)
  pipInstall(python, [TENSORBOARD])
}

/** A headless browser for the report's test: Debian's chromium where apt has it. */
function browser() {
  const found = CHROMES.find((c) => has(c))
  if (found) return console.log(`browser: ${found}`)
  if (aptCandidate('chromium')) run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  else console.log('browser: none found (chromium, google-chrome); the report\'s browser test needs one (PRCL_CHROME=/path)')
}

/** pip install into `python` (Debian's included: PIP_BREAK_SYSTEM_PACKAGES, as an environment
 *  variable rather than the flag, which pips older than 23.0.1 do not know). */
function pipInstall(python, packages) {
  run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', ...packages],
    { env: { ...process.env, PIP_BREAK_SYSTEM_PACKAGES: '1' } })
}

let aptUpdated = false
function aptUpdate() {
  if (!aptUpdated) run('apt-get', ['update', '-qq'])
  aptUpdated = true
}

function aptCandidate(pkg) {
  if (!existsSync('/etc/debian_version') || !has('apt-get') || process.getuid?.() !== 0) return false
  aptUpdate()
  const r = spawnSync('apt-cache', ['policy', pkg], { encoding: 'utf8' })
  const m = /Candidate:\s*(\S+)/.exec(r.stdout ?? '')
  return m !== null && m[1] !== '(none)'
}

function hasPip(python) {
  return spawnSync(python, ['-m', 'pip', '--version'], { stdio: 'ignore' }).status === 0
}

/** ruff on PATH or as `python3 -m ruff`; installed by apt or pip when missing. */
function ruff() {
  let cmd = findRuff()
  if (cmd) {
    console.log(`ruff: ${cmd.join(' ')}`)
    return
  }
  const aptEnv = { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }
  if (aptCandidate('ruff')) {
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'ruff'], aptEnv)
  } else {
    const pythons = ['python3', '/usr/bin/python3'].filter((p) => p.startsWith('/') ? existsSync(p) : has(p))
    let python = pythons.find(hasPip)
    if (!python && existsSync('/usr/bin/python3') && aptCandidate('python3-pip')) {
      run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'python3-pip'], aptEnv)
      python = '/usr/bin/python3'
    }
    if (!python) throw new Error(`ruff is missing and no python with pip was found: install ruff ${RUFF_VERSION} (pip install ruff==${RUFF_VERSION})`)
    pipInstall(python, [`ruff==${RUFF_VERSION}`])
  }
  cmd = findRuff()
  if (!cmd) throw new Error('ruff was installed but neither `ruff` nor `python3 -m ruff` runs it')
  console.log(`ruff: ${cmd.join(' ')}`)
}

function instructions(verdict) {
  return [
    'prcl could not set up a Python interpreter for the worker by itself.',
    verdict.error ?? '',
    '',
    'Do one of these, then run `npm run setup` again:',
    '  conda:          conda env create -f environment.yml && conda activate prcl',
    `  Debian/Ubuntu:  sudo apt-get install ${APT_PACKAGES.join(' ')}`,
    '  pip (any OS):   python3 -m pip install torch torchvision pyzmq msgpack numpy pillow jsonschema fastjsonschema safetensors pytest',
    '  the worker alone (a GPU node without Node.js): python3 -m pip install ./py, then prcl-worker --connect tcp://DRIVER:PORT',
    '  an interpreter you already have: export PRCL_PYTHON=/path/to/python',
  ].join('\n')
}

try {
  nodeModules()
  let verdict = doctorJson()
  if (verdict.ok) {
    console.log(`python: ${verdict.python.executable} has everything the worker needs`)
  } else {
    const condaPython = condaRoute()
    if (condaPython) process.env.PRCL_PYTHON ??= condaPython
    else if (!aptRoute()) throw new Error(instructions(verdict))
    verdict = doctorJson()
    if (!verdict.ok) throw new Error(instructions(verdict))
  }
  ruff()
  tensorboard(verdict.python.executable)
  browser()
  run(process.execPath, [join(ROOT, 'ts/cli/prcl.mjs'), 'doctor'])
} catch (e) {
  console.error(`\nsetup failed: ${e.message}`)
  process.exit(1)
}
