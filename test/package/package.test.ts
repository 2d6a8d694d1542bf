// The package as a user gets it: `npm run build`, `npm pack`, the tarball installed into a scratch
// project, and then plain Node (no tsx, no sources) importing 'prcl' and running its `prcl` bin.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { ROOT } from '../../ts/paths.ts'

const NPM = 'npm'
let dir: string
let app: string
let packed: string[]

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.error) throw r.error
  if (r.status !== 0) throw new Error(`${what} exited with ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`)
  return r.stdout
}

/** Runs `node --input-type=module -e CODE` in the scratch project; its last stdout line as JSON. */
function nodeEval(code: string): unknown {
  const out = ok(spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    cwd: app, encoding: 'utf8', env: { ...process.env, PRCL_PYTHON: inject('python') },
  }), 'node -e')
  return JSON.parse(out.trim().split('\n').pop()!)
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'prcl-package-'))
  ok(spawnSync(NPM, ['run', 'build'], { cwd: ROOT, encoding: 'utf8' }), 'npm run build')
  // --ignore-scripts: prepack would build again, and its output would spoil --json.
  const pack = JSON.parse(ok(spawnSync(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir],
    { cwd: ROOT, encoding: 'utf8' }), 'npm pack')) as Array<{ filename: string; files: Array<{ path: string }> }>
  packed = pack[0]!.files.map((f) => f.path)
  app = join(dir, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }))
  ok(spawnSync(NPM, ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, pack[0]!.filename)],
    { cwd: app, encoding: 'utf8' }), 'npm install <tarball>')
}, 600_000)

afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }) })

describe('the packed package', () => {
  it('ships the compiled code with its types, the worker, the schemas and the bench scripts, and no sources', () => {
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/bench/wire.js', 'ts/cli/prcl.mjs',
      'schemas/ops.json', 'py/prcl_worker/__main__.py', 'bench/prcl_loss.py', 'bench/raw_echo.py', 'package.json']) {
      expect(packed, f).toContain(f)
    }
    expect(packed.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([])
    expect(packed.filter((f) => f.includes('__pycache__') || f.endsWith('.pyc'))).toEqual([])
    expect(packed.filter((f) => f.startsWith('test/') || f.startsWith('bench/results/'))).toEqual([])
  })

  it("imports from 'prcl' in plain Node", () => {
    const r = nodeEval(`
      import { Experiment, loadConfig, tensor, Worker } from 'prcl'
      const cfg = loadConfig('synthetic-demo')
      console.log(JSON.stringify({ Experiment: typeof Experiment, loadConfig: typeof loadConfig, tensor: typeof tensor,
        Worker: typeof Worker, experimentIsClass: /^class\\b/.test(String(Experiment)), name: cfg.name }))`)
    expect(r).toEqual({ Experiment: 'function', loadConfig: 'function', tensor: 'function', Worker: 'function',
      experimentIsClass: true, name: 'synthetic-demo' })
  })

  it('starts a worker from the installed files (py/ and schemas/ found next to dist/)', () => {
    const r = nodeEval(`
      import { Worker } from 'prcl'
      const w = await Worker.start({ device: 'cpu', log: 'silent' })
      try {
        const pong = await w.call('ping', { payload: 7 })
        console.log(JSON.stringify(pong.body))
      } finally { await w.close() }`)
    expect(r).toEqual({ pong: true, payload: 7 })
  })

  it('runs the prcl bin from dist', () => {
    expect(existsSync(join(app, 'node_modules', 'prcl', 'dist', 'cli', 'main.js'))).toBe(true)
    const help = spawnSync('npx', ['--no', '--', 'prcl', '--help'], { cwd: app, encoding: 'utf8' })
    expect(ok(help, 'npx prcl --help')).toMatch(/usage: prcl <command>/)
    const bench = spawnSync('npx', ['--no', '--', 'prcl', 'bench', 'nothing'], { cwd: app, encoding: 'utf8' })
    expect(bench.status).toBe(2)
    expect(bench.stderr).toMatch(/unknown benchmark 'nothing' \(available: wire, prcl-loss, step, overhead, ddp, data, driver, learning, gpu-inputs\)/)
  })

  it("loads the programs behind 'prcl bench' from the package", () => {
    const r = nodeEval(`
      const out = {}
      for (const [file, fn] of [['wire', 'wireBench'], ['prcl-loss', 'prclLossBench'], ['step', 'stepBench'], ['overhead', 'overheadBench'], ['ddp', 'ddpBench']]) {
        out[file] = typeof (await import('./node_modules/prcl/dist/bench/' + file + '.js'))[fn]
      }
      console.log(JSON.stringify(out))`)
    expect(r).toEqual({ wire: 'function', 'prcl-loss': 'function', step: 'function', overhead: 'function', ddp: 'function' })
  })
})
