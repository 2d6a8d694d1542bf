// The `prcl` command as a user runs it: a real process, a real worker.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeLabelPng } from '../../ts/data/png.ts'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../../ts/paths.ts'
import type { CommandDecl } from '../../ts/cli/args.ts'
import { COMMANDS } from '../../ts/cli/commands.ts'

const PRCL = join(ROOT, 'ts/cli/prcl.mjs')

function prcl(args: string[]) {
  return spawnSync(process.execPath, [PRCL, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
}

function processExists(pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

describe('prcl doctor', () => {
  it('--json prints one object with protocol, python, torch, device and ops', () => {
    const r = prcl(['doctor', '--json'])
    expect(r.status, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout)
    expect(out.ok).toBe(true)
    expect(out.protocol).toBe(1)
    expect(out.python.executable).toMatch(/python/)
    expect(out.torch).toMatch(/^\d+\.\d+/)
    expect(['cpu', 'cuda']).toContain(out.device.split(':')[0])
    expect(out.ops).toEqual(expect.arrayContaining(['ping', 'echo', 'stats', 'shutdown']))
    expect(processExists(out.worker.pid)).toBe(false)
    expect(out.weights.files.map((w: { backbone: string }) => w.backbone)).toEqual(['resnet18', 'resnet50', 'resnet101'])
  })

  it('explains every rejected interpreter when none works', () => {
    const r = spawnSync(process.execPath, [PRCL, 'doctor'], {
      cwd: ROOT, encoding: 'utf8', env: { ...process.env, PRCL_PYTHON: '/bin/false' },
    })
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/\/bin\/false \[PRCL_PYTHON\]/)
    expect(r.stderr).toMatch(/npm run setup/)
  })
})

describe('prcl schemas', () => {
  it('--check passes on the checked-in files', () => {
    const r = prcl(['schemas', '--check'])
    expect(r.status, r.stderr).toBe(0)
  })
})

describe('help and version', () => {
  const declared = (c: CommandDecl) => Object.keys(c.options).map((o) => `--${o}`)

  it('prcl --help lists every command and exits 0', () => {
    const r = prcl(['--help'])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^usage: prcl <command>/)
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c.name} +${c.summary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'))
  })

  it('--version prints package.json\'s version', () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    for (const flag of ['--version', '-V']) {
      const r = prcl([flag])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout.trim()).toBe(version)
    }
  })

  it.each(COMMANDS.map((c) => [c.name, c] as const))('prcl %s --help prints its usage and every declared option, exit 0', (name, c) => {
    const r = prcl([name, '--help'])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^usage: prcl ${name}\\b`))
    for (const o of [...declared(c), '--help']) expect(r.stdout).toMatch(new RegExp(`^ +(-\\w, )?${o}\\b`, 'm'))
    expect(r.stderr).toBe('')
  })

  it('-h and prcl help <command> print the same help', () => {
    const a = prcl(['train', '--help']).stdout
    expect(prcl(['train', '-h']).stdout).toBe(a)
    expect(prcl(['help', 'train']).stdout).toBe(a)
  })
})

describe('command-line mistakes', () => {
  const noStack = (s: string) => expect(s).not.toMatch(/^\s+at /m)

  it.each([
    ['train', '--bogus'],
    ['eval', '--checkpont'],
    ['synth', '--seeed'],
    ['bench', '--jsn'],
    ['repl', '--devcie'],
  ])('prcl %s %s: exit 2, the option named, the command\'s usage', (name, opt) => {
    const r = prcl([name, opt])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(`prcl ${name}: unknown option '${opt}'`)
    expect(r.stderr).toMatch(new RegExp(`usage: prcl ${name}\\b`))
    noStack(r.stderr)
    expect(r.stdout).toBe('')
  })

  it.each([
    [['synth', '--out', 'x', '--seed', 'abc'], /--seed must be an integer, got 'abc'/],
    [['eval', '--run', 'x', '--model', 'everyone'], /--model must be one of teacher, student, both, got 'everyone'/],
    [['train', '--config', 'synthetic-demo', '--stop-after', '0'], /--stop-after must be a positive integer, got '0'/],
    [['demo', '--seeds', '0,x'], /--seeds must be comma-separated non-negative integers, got '0,x'/],
    [['bench', 'step', '--model', 'r50'], /--model must be one of tiny, r101, got 'r50'/],
    [['split', '--out', 'x', '--list'], /option '--list' needs a value \(FILE\)/],
    [['predict', '--run', 'x'], /missing --out DIR/],
    [['doctor', 'now'], /unexpected argument 'now'/],
    [['sweep', '--config', 'synthetic-demo', '--out', 'x'], /a sweep needs an axis: --methods LIST and\/or --grid PATH=\[V,\.\.\.\]/],
    [['sweep', '--config', 'synthetic-demo', '--out', 'x', '--methods', 'supervised,mt'], /--methods: unknown mt; known: supervised, unsup, prcl/],
    [['sweep', '--config', 'synthetic-demo', '--out', 'x', '--grid', 'ema.alpha=0.9'], /--grid ema\.alpha: the values must be a JSON array/],
    [['sweep', '--config', 'synthetic-demo', '--out', 'x', '--methods', 'prcl', '--devices', 'gpu0'], /--devices: 'gpu0' is not a device/],
    [['sweep', '--config', 'synthetic-demo', '--out', 'x', '--methods', 'prcl', '--parallel', '0'], /--parallel must be a positive integer, got '0'/],
    [['demo', '--methods', 'prcl'], /the demo compares with supervised-only, so the list must include supervised/],
    [['synth', '--out', 'x', '--kind', 'shapes', '--thicken', '1'], /--thicken is a digits option; this is --kind shapes/],
  ])('bad value %j: exit 2, named, with usage', (args, message) => {
    const r = prcl(args)
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).toMatch(new RegExp(`usage: prcl ${args[0]}\\b`))
    noStack(r.stderr)
  })

  it('pytest hands its arguments to pytest; --help before them is ours', () => {
    const r = prcl(['pytest', '--help'])
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^usage: prcl pytest/)
    const v = prcl(['pytest', '--version'])
    expect(v.status, v.stderr).toBe(0)
    expect(v.stdout + v.stderr).toMatch(/pytest \d+\.\d+/)
    const h = prcl(['pytest', '--', '--help'])
    expect(h.status, h.stderr).toBe(0)
    expect(h.stdout).not.toMatch(/usage: prcl/)
    expect(h.stdout).toMatch(/usage: .*pytest|-k EXPRESSION/)
  })


  it('sweep --print-commands prints one prcl train per run, which train takes as they are', () => {
    const out = mkdtempSync(join(tmpdir(), 'prcl-sweep-cli-'))
    try {
      const r = prcl(['sweep', '--config', 'synthetic-demo', '--methods', 'supervised,prcl', '--grid', 'ema.alpha=[0.9,0.99]', '--seeds', '4,5', '--out', out, '--print-commands'])
      expect(r.status, r.stderr).toBe(0)
      const lines = r.stdout.trim().split('\n')
      expect(lines).toHaveLength(8)
      expect(lines[0]).toBe(`prcl train --config synthetic-demo --set loss.terms.unsup.enabled=false --set loss.terms.prcl.enabled=false --set ema.buffers=ema --set ema.alpha=0.9 --set seed=4 --set name=supervised_alpha-0.9-seed4 --run-dir ${join(out, 'supervised_alpha-0.9-seed4')}`)
      expect(lines[7]).toMatch(/--set ema\.alpha=0\.99 --set seed=5 --set name=prcl_alpha-0\.99-seed5 --run-dir \S+prcl_alpha-0\.99-seed5$/)
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  })

  it('an unknown command exits 2 and names it', () => {
    const r = prcl(['trian'])
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/unknown command 'trian'/)
    expect(r.stderr).toMatch(/usage: prcl/)
  })
  it('an unknown option exits 2 and names it', () => {
    const r = prcl(['doctor', '--jsno'])
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/--jsno/)
  })
})

describe('prcl split', () => {
  const list = join(ROOT, '..', 'shared', 'data', 'splits', 'prcl', 'VOC_split', '662', '3407', 'valid_filename.txt')
  const lines = (f: string) => readFileSync(f, 'utf8').split('\n')

  it('writes a seeded random split of a list: disjoint, complete, the same for the same seed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prcl-split-'))
    const a = prcl(['split', '--list', list, '--labeled', '92', '--seed', '5', '--out', join(dir, 'a'), '--json'])
    expect(a.status, a.stderr).toBe(0)
    const ra = JSON.parse(a.stdout)
    expect(ra.labeled.lines).toBe(92)
    expect(ra.unlabeled.lines).toBe(1449 - 92)
    const labeled = lines(join(dir, 'a', 'labeled_filename.txt'))
    const unlabeled = lines(join(dir, 'a', 'unlabeled_filename.txt'))
    expect(new Set([...labeled, ...unlabeled])).toEqual(new Set(lines(list)))
    expect(labeled.filter((id) => unlabeled.includes(id))).toEqual([])
    const b = JSON.parse(prcl(['split', '--list', list, '--labeled', '92', '--seed', '5', '--out', join(dir, 'b'), '--json']).stdout)
    expect(b.labeled.sha16).toBe(ra.labeled.sha16)
    const c = JSON.parse(prcl(['split', '--list', list, '--labeled', '92', '--seed', '6', '--out', join(dir, 'c'), '--json']).stdout)
    expect(c.labeled.sha16).not.toBe(ra.labeled.sha16)
    rmSync(dir, { recursive: true, force: true })
  })

  it('class-balanced: every class among the labeled ids; mistakes named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prcl-split-'))
    // Six images; class 3 appears only in img5.
    const classes = [[0, 1], [0, 1], [0, 2], [0, 1, 2], [0, 1], [0, 3]]
    mkdirSync(join(dir, 'labels'))
    classes.forEach((cs, i) => {
      const px = new Uint8Array(16).map((_, p) => cs[p % cs.length]!)
      writeFileSync(join(dir, 'labels', `img${i}.png`), encodeLabelPng(4, 4, px))
    })
    writeFileSync(join(dir, 'ids.txt'), classes.map((_, i) => `img${i}`).join('\n'))
    const r = prcl(['split', '--list', join(dir, 'ids.txt'), '--labeled', '3', '--mode', 'class-balanced', '--labels', join(dir, 'labels'), '--out', join(dir, 'o')])
    expect(r.status, r.stderr).toBe(0)
    expect(lines(join(dir, 'o', 'labeled_filename.txt'))).toContain('img5')
    const bad = prcl(['split', '--list', join(dir, 'ids.txt'), '--labeled', '9', '--out', join(dir, 'o')])
    expect(bad.status).not.toBe(0)
    expect(bad.stderr).toMatch(/count must be an integer from 1 to 6/)
    const noLabels = prcl(['split', '--list', join(dir, 'ids.txt'), '--labeled', '2', '--mode', 'class-balanced', '--out', join(dir, 'o')])
    expect(noLabels.status).toBe(2)
    expect(noLabels.stderr).toMatch(/class-balanced needs --labels DIR/)
    rmSync(dir, { recursive: true, force: true })
  })
})

describe('prcl repl', () => {
  function startRepl() {
    const p = spawn(process.execPath, [PRCL, 'repl'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PRCL_REPL_HISTORY: '' } })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => { out += d })
    p.stderr.on('data', (d) => { err += d })
    const prompts = () => (out.match(/prcl> |\.\.\. /g) ?? []).length
    async function until(cond: () => boolean, ms = 90_000) {
      const end = Date.now() + ms
      while (!cond()) {
        if (Date.now() > end) throw new Error(`repl timed out; stdout:\n${out}\nstderr:\n${err}`)
        await new Promise((r) => setTimeout(r, 20))
      }
    }
    async function send(line: string) {
      const n = prompts()
      p.stdin.write(`${line}\n`)
      await until(() => prompts() > n)
    }
    const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)))
    return { p, send, until, exited, out: () => out, err: () => err, prompts }
  }

  it('evaluates TypeScript with top-level await against the connected worker', async () => {
    const r = startRepl()
    await r.until(() => r.prompts() > 0)
    await r.send(`const n: number = (await worker.call('ping', { payload: 41 })).body.payload + 1`)
    await r.send('n * 1000')
    await r.send(`const e = await worker.call('echo', {}, { tensors: { x: tensor(new Float32Array([1.5, -2])) } })`)
    await r.send('Array.from(e.tensors.x.data).join("|")')
    await r.send('function add(a: number,')
    await r.send('  b: number) { return a + b }')
    await r.send('add(20, 3)')
    const pid = Number(/pid (\d+)/.exec(r.out())?.[1])
    r.p.stdin.write('.exit\n')
    expect(await r.exited).toBe(0)
    expect(r.out()).toContain('42000')
    expect(r.out()).toContain("'1.5|-2'")
    expect(r.out()).toContain('23')
    expect(processExists(pid)).toBe(false)
  })

  it('on SIGTERM shuts its worker down and exits without hanging', async () => {
    const r = startRepl()
    await r.until(() => r.prompts() > 0)
    const pid = Number(/pid (\d+)/.exec(r.out())?.[1])
    expect(processExists(pid)).toBe(true)
    r.p.kill('SIGTERM')
    expect(await r.exited).toBe(143)
    expect(processExists(pid)).toBe(false)
  })

  it('if the driver is killed outright, its worker does not outlive it', async () => {
    const r = startRepl()
    await r.until(() => r.prompts() > 0)
    const pid = Number(/pid (\d+)/.exec(r.out())?.[1])
    r.p.kill('SIGKILL')
    await r.exited
    const end = Date.now() + 5000
    while (processExists(pid) && Date.now() < end) await new Promise((res) => setTimeout(res, 50))
    expect(processExists(pid)).toBe(false)
  })
})
