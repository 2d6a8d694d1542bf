// Finding the Python interpreter that can run the worker. On Debian the `python3` first on PATH
// may be a pyenv or venv interpreter without torch, while Debian's python3-torch lives in
// /usr/bin/python3; so each candidate is asked, and each refusal is kept with its reason.
import { execFile } from 'node:child_process'
import { existsSync, realpathSync } from 'node:fs'
import { delimiter, join } from 'node:path'

export const REQUIRED_MODULES = ['torch', 'zmq', 'msgpack', 'numpy', 'fastjsonschema', 'safetensors'] as const

export interface PythonProbe {
  candidate: string
  source: string
  executable?: string
  ok: boolean
  version?: string
  modules?: Record<string, string>
  reason?: string
}

export interface PythonChoice {
  python: string
  probe: PythonProbe
  rejected: PythonProbe[]
}

const PROBE = `
import importlib, json, sys
out = {"executable": sys.executable, "version": sys.version.split()[0], "modules": {}, "missing": {}}
for name in ${JSON.stringify(REQUIRED_MODULES)}:
    try:
        m = importlib.import_module(name)
        v = getattr(m, "__version__", None) or getattr(m, "VERSION", None) or getattr(m, "version", "?")
        out["modules"][name] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
    except ModuleNotFoundError:
        out["missing"][name] = None
    except Exception as e:
        out["missing"][name] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
`

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue
    const p = join(dir, name)
    if (existsSync(p)) return p
  }
  return null
}

/** Candidates in order of preference, each with where it came from. */
export function candidates(explicit?: string): Array<{ candidate: string; source: string }> {
  const out: Array<{ candidate: string; source: string }> = []
  const env = process.env.PRCL_PYTHON
  if (env) return [{ candidate: env, source: 'PRCL_PYTHON' }]
  if (explicit) return [{ candidate: explicit, source: 'worker.python' }]
  const add = (c: string | null | undefined, source: string) => { if (c) out.push({ candidate: c, source }) }
  if (process.env.CONDA_PREFIX) add(join(process.env.CONDA_PREFIX, 'bin', 'python'), 'active conda env')
  if (process.env.VIRTUAL_ENV) add(join(process.env.VIRTUAL_ENV, 'bin', 'python'), 'active virtualenv')
  add(onPath('python3'), 'python3 on PATH')
  add(onPath('python'), 'python on PATH')
  for (const p of ['/usr/bin/python3', '/usr/local/bin/python3', '/opt/conda/bin/python']) add(p, 'usual location')
  return out
}

export function probePython(candidate: string, source: string, timeoutMs = 60_000): Promise<PythonProbe> {
  return new Promise((resolve) => {
    if (candidate.includes('/') && !existsSync(candidate)) {
      resolve({ candidate, source, ok: false, reason: 'no such file' })
      return
    }
    execFile(candidate, ['-c', PROBE], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const base = { candidate, source }
      if (err && !stdout) {
        const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found'
          : err.killed ? `did not answer within ${timeoutMs} ms` : (stderr.trim().split('\n').pop() ?? err.message)
        resolve({ ...base, ok: false, reason })
        return
      }
      try {
        const r = JSON.parse(stdout.trim().split('\n').pop() ?? '') as { executable: string; version: string; modules: Record<string, string>; missing: Record<string, string | null> }
        const missing = Object.keys(r.missing)
        resolve({
          ...base, executable: r.executable, version: r.version, modules: r.modules, ok: missing.length === 0,
          reason: missing.length ? `cannot import ${missing.map((m) => r.missing[m] ? `${m} (${r.missing[m]})` : m).join(', ')}` : undefined,
        })
      } catch {
        resolve({ ...base, ok: false, reason: `unexpected answer: ${stdout.slice(0, 200)}` })
      }
    })
  })
}

let cached: Promise<PythonChoice> | null = null

/** The first candidate that imports everything the worker needs; throws with every refusal. */
export function findPython(explicit?: string): Promise<PythonChoice> {
  if (!explicit && !process.env.PRCL_PYTHON && cached) return cached
  const search = (async () => {
    const rejected: PythonProbe[] = []
    const seen = new Set<string>()
    for (const { candidate, source } of candidates(explicit)) {
      let key = candidate
      try { key = realpathSync(candidate) } catch { /* not a path: probe by name */ }
      if (seen.has(key)) continue
      seen.add(key)
      const probe = await probePython(candidate, source)
      if (probe.ok) return { python: candidate, probe, rejected }
      rejected.push(probe)
    }
    throw new PythonNotFoundError(rejected)
  })()
  if (!explicit && !process.env.PRCL_PYTHON) {
    cached = search
    search.catch(() => { cached = null })
  }
  return search
}

export class PythonNotFoundError extends Error {
  override name = 'PythonNotFoundError'
  constructor(readonly rejected: PythonProbe[]) {
    super(
      `no Python interpreter can run the worker (it needs ${REQUIRED_MODULES.join(', ')}).\n` +
      rejected.map((r) => `  ${r.candidate} [${r.source}]: ${r.reason}`).join('\n') +
      '\nSet one up with `npm run setup`, or name an interpreter with PRCL_PYTHON=/path/to/python.',
    )
  }
}
