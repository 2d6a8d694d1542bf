// The REPL as a user meets it: declarations persist from one input to the next whatever they
// contain (top-level await included), tensors print as dtype and shape, history is kept.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterAll, describe, expect, it } from 'vitest'
import { startRepl, type Repl } from '../../ts/cli/repl.ts'
import { ROOT } from '../../ts/paths.ts'

const PRCL = join(ROOT, 'ts/cli/prcl.mjs')
const PROMPT = 'prcl> '

/** Runs `prcl repl` with the inputs piped in one write (as `cat script | prcl repl` does: no
 *  input waits for the one before) and returns what each input printed, in order. */
async function session(inputs: string[], env: NodeJS.ProcessEnv = {}): Promise<{ outputs: string[]; code: number | null; stderr: string }> {
  const p = spawn(process.execPath, [PRCL, 'repl', '--device', 'cpu', '--quiet'], {
    cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env },
  })
  let out = ''
  let err = ''
  p.stdout.on('data', (d) => { out += d })
  p.stderr.on('data', (d) => { err += d })
  const code = await new Promise<number | null>((resolve) => {
    p.on('exit', (c) => resolve(c))
    p.stdin.end(inputs.map((l) => `${l}\n`).join('') + '.exit\n')
  })
  // Non-terminal REPL: a prompt, then after each input its output and the next prompt.
  const parts = out.split(PROMPT)
  return { outputs: parts.slice(1, inputs.length + 1).map((s) => s.trim()), code, stderr: err }
}

describe('prcl repl: declarations persist across inputs', () => {
  const home = mkdtempSync(join(tmpdir(), 'prcl-repl-'))
  afterAll(() => rmSync(home, { recursive: true, force: true }))

  it('const/let/var, destructuring, several declarators, functions and classes, with and without await', async () => {
    const inputs = [
      /* 0 */ `const r = await worker.call('ping', { payload: 42 })`,
      /* 1 */ 'typeof r',
      /* 2 */ 'r.body.payload',
      /* 3 */ 'let q = await Promise.resolve(5)',
      /* 4 */ 'q + 1',
      /* 5 */ `const { body } = await worker.call('ping', { payload: 7 })`,
      /* 6 */ 'body.payload',
      /* 7 */ 'const a = 1, b = await Promise.resolve(2)',
      /* 8 */ 'a + b',
      /* 9 */ 'var v: number = await Promise.resolve(8)',
      /* 10 */ 'v',
      /* 11 */ 'function twice(x: number): number { return 2 * x }',
      /* 12 */ 'twice(21)',
      /* 13 */ `async function payload(n: number) { return (await worker.call('ping', { payload: n })).body.payload }`,
      /* 14 */ 'await payload(11)',
      /* 15 */ 'class Box { constructor(readonly v: number) {} }; const box = new Box(await Promise.resolve(9))',
      /* 16 */ 'box.v + new Box(1).v',
      /* 17 */ 'interface P { n: number }; const p: P = { n: await Promise.resolve(3) }',
      /* 18 */ 'p.n',
      /* 19 */ 'const [first, ...others] = await Promise.resolve([1, 2, 3])',
      /* 20 */ 'first + others.length',
    ]
    const s = await session(inputs, { PRCL_REPL_HISTORY: join(home, 'history') })
    expect(s.code, s.stderr).toBe(0)
    const o = s.outputs
    expect(o[0]).toBe('')
    expect(o[1]).toBe("'object'")
    expect(o[2]).toBe('42')
    expect(o[4]).toBe('6')
    expect(o[6]).toBe('7')
    expect(o[8]).toBe('3')
    expect(o[10]).toBe('8')
    expect(o[12]).toBe('42')
    expect(o[14]).toBe('11')
    expect(o[16]).toBe('10')
    expect(o[18]).toBe('3')
    expect(o[20]).toBe('3')
    expect(o.join('\n')).not.toMatch(/Uncaught|Error/)
  })

  it('a tensor prints as dtype and shape, alone and inside a reply, and keeps its data', async () => {
    const s = await session([
      `const e = await worker.call('echo', {}, { tensors: { x: tensor(new Float32Array([1.5, -2, 3, 4]), [2, 2]), y: tensor(new Int32Array([7, 8, 9])) } })`,
      'e.tensors.x',
      'e',
      '[e.tensors.y]',
      `Array.from(e.tensors.x.data).join('|')`,
    ], { PRCL_REPL_HISTORY: join(home, 'history') })
    expect(s.code, s.stderr).toBe(0)
    const [, x, reply, list, data] = s.outputs
    expect(x).toBe('Tensor<float32>[2, 2]')
    expect(reply).toMatch(/tensors: \{\s*x: Tensor<float32>\[2, 2\],\s*y: Tensor<int32>\[3\]\s*\}/)
    expect(reply).not.toMatch(/Float32Array|Int32Array|1\.5|\b9\b/)
    expect(list).toBe('[ Tensor<int32>[3] ]')
    expect(data).toBe("'1.5|-2|3|4'")
  })

  it('an error in one input does not hold up the next', async () => {
    const s = await session([
      `throw new Error('boom')`,
      `await Promise.reject(new Error('later'))`,
      'let after = await Promise.resolve(1)',
      'after + 1',
    ], { PRCL_REPL_HISTORY: join(home, 'history') })
    expect(s.code, s.stderr).toBe(0)
    expect(s.outputs[0]).toMatch(/Uncaught Error: boom/)
    expect(s.outputs[1]).toMatch(/Uncaught Error: later/)
    expect(s.outputs[3]).toBe('2')
  })
})

describe('prcl repl: history', () => {
  /** A terminal-mode REPL over in-memory streams (history is kept for terminals only). */
  async function terminal(): Promise<{ repl: Repl; input: PassThrough; out: () => string; type: (s: string) => Promise<void>; closed: Promise<void> }> {
    const input = new PassThrough()
    const output = new PassThrough()
    let text = ''
    output.on('data', (d) => { text += d })
    const repl = await startRepl({ input, output, terminal: true, useGlobal: false })
    const closed = new Promise<void>((resolve) => repl.server.on('exit', () => resolve()))
    return {
      repl, input, closed, out: () => text,
      type: async (s: string) => {
        input.write(s)
        await new Promise((r) => setImmediate(r))
        await repl.idle()
      },
    }
  }

  it('is written to the PRCL_REPL_HISTORY file and read back by the next session', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'prcl-history-'))
    const file = join(dir, 'history')
    const saved = process.env.PRCL_REPL_HISTORY
    process.env.PRCL_REPL_HISTORY = file
    try {
      const one = await terminal()
      await one.type('40 + 2\r')
      await one.type('const greeting: string = "hi " + await Promise.resolve("there")\r')
      await one.type('greeting\r')
      expect(one.out()).toContain('42')
      expect(one.out()).toContain("'hi there'")
      one.input.write('\x04') // Ctrl+D on an empty line ends the session
      await one.closed
      const lines = readFileSync(file, 'utf8').split(/\r?\n/)
      expect(lines).toEqual(['greeting', 'const greeting: string = "hi " + await Promise.resolve("there")', '40 + 2'])

      const two = await terminal()
      expect((two.repl.server as unknown as { history: string[] }).history.slice(0, 3)).toEqual(lines)
      // Up arrow three times: the first session's first input, evaluated again.
      const before = two.out().length
      await two.type('\x1b[A\x1b[A\x1b[A\r')
      expect(two.out().slice(before)).toContain('42')
      two.input.write('\x04')
      await two.closed
      expect(readFileSync(file, 'utf8').split(/\r?\n/)[0]).toBe('40 + 2')
    } finally {
      if (saved === undefined) delete process.env.PRCL_REPL_HISTORY
      else process.env.PRCL_REPL_HISTORY = saved
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
