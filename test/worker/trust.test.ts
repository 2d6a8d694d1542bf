// Trust boundaries with a real worker (issue 10 item 8): the socket of a spawned worker in a
// directory only this user can open; a forged hello on it refused; heartbeat intervals bounded;
// an attached worker outlives a stranger's bare TCP connect and close.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Dealer } from 'zeromq'
import { PY_DIR, ROOT } from '../../ts/paths.ts'
import { packHeader } from '../../ts/wire/codec.ts'
import { preset } from '../../ts/config/presets.ts'
import { workerSettings } from '../../ts/experiment/settings.ts'
import { findPython } from '../../ts/worker/python.ts'
import { tinySettings } from '../../ts/worker/settings.ts'
import { Worker } from '../../ts/worker/worker.ts'

const opened: Worker[] = []
const children: ChildProcess[] = []
afterEach(async () => {
  await Promise.all(opened.splice(0).map((w) => w.close()))
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise((r) => srv.close(r))
  return port
}

describe('a spawned worker', () => {
  it('refuses a heartbeat interval out of range before it starts anything', async () => {
    for (const heartbeatMs of [1, 49, 60_001, 0.5]) {
      await expect(Worker.start({ log: 'silent', device: 'cpu', heartbeatMs })).rejects.toThrow(/heartbeatMs must be an integer in 50\.\.60000/)
    }
  })

  it('listens in a directory only this user can open, removed on close, and refuses a forged hello', async () => {
    const w = await Worker.start({ log: 'silent', device: 'cpu', heartbeatMs: 200 })
    opened.push(w)
    expect(w.endpoint).toMatch(/^ipc:\/\//)
    const dir = dirname(w.endpoint.slice('ipc://'.length))
    expect(statSync(dir).mode & 0o777).toBe(0o700)
    const real = w.hello.instance

    const refusals: Array<{ instance: string; reason: string }> = []
    w.on('hello-refused', (r) => refusals.push(r))
    const forger = new Dealer({ routingId: 'forger', linger: 0 })
    forger.connect(w.endpoint)
    await forger.send(packHeader({ ...w.hello, instance: 'forger', pid: 1 }))
    for (let i = 0; i < 100 && refusals.length === 0; i++) await sleep(20)
    forger.close()
    expect(refusals).toEqual([{ instance: 'forger', reason: `a hello from instance forger, but this driver started ${real}` }])
    expect(w.hello.instance).toBe(real)
    expect((await w.call('ping', { payload: 2 })).body).toEqual({ pong: true, payload: 2 })

    await w.close()
    expect(existsSync(dir)).toBe(false)
  })
})

describe('an attached worker', () => {
  it('is not declared dead when another peer connects and disconnects; its own exit still is', async () => {
    const port = await freePort()
    const endpoint = `tcp://127.0.0.1:${port}`
    const { python } = await findPython()
    const child = spawn(python, ['-m', 'prcl_worker', '--connect', endpoint, '--device', 'cpu', '--heartbeat-ms', '100', '--quiet'], {
      cwd: ROOT, env: { ...process.env, PYTHONPATH: PY_DIR }, stdio: 'ignore',
    })
    children.push(child)
    const w = await Worker.attach(endpoint, { log: 'silent', startTimeoutMs: 90_000 })
    opened.push(w)
    let disconnects = 0
    w.connection.on('disconnect', () => disconnects++)
    const deaths: Error[] = []
    w.on('death', (e) => deaths.push(e))

    for (let i = 0; i < 3; i++) {
      const sock = connect(port, '127.0.0.1')
      await new Promise((r) => sock.once('connect', r))
      sock.destroy()
      await sleep(50)
    }
    await sleep(600) // three times the grace of two heartbeat intervals
    expect(disconnects).toBeGreaterThan(0) // the strangers' disconnects did reach the worker's handler
    expect(deaths).toEqual([])
    expect(w.alive).toBe(true)
    expect((await w.call('ping', { payload: 3 })).body).toEqual({ pong: true, payload: 3 })

    const died = new Promise<Error>((r) => w.once('death', r))
    child.kill('SIGKILL')
    const err = await died
    expect(err.message).toMatch(/disconnected|no heartbeat/)
  }, 120_000)
})

describe('files', () => {
  it('workerSettings names the run directory for writing and the weights directory for reading', () => {
    const cfg = preset('synthetic-demo')!
    expect(workerSettings(cfg, null).paths).toBeUndefined()
    const weights = { path: resolve('weights/r18.pth'), sha256: '0'.repeat(64), trusted: false }
    const s = workerSettings(cfg, weights, { runDir: 'runs/x' })
    expect(s.paths).toEqual({ write: [resolve('runs/x')], read: [resolve('weights')] })
    expect(s.model.pretrained).toEqual(weights)
  })

  it('the worker saves and loads only inside the directories named at configure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'prcl-trust-'))
    try {
      const run = join(dir, 'run')
      mkdirSync(run)
      symlinkSync(tmpdir(), join(run, 'out'))
      const w = await Worker.start({ log: 'silent', device: 'cpu' })
      opened.push(w)
      await expect(w.call('save', { path: join(run, 'a.pt') })).rejects.toThrow(/not configured/)
      await w.call('configure', { ...tinySettings(), paths: { write: [run], read: [] } }, { timeoutMs: 120_000 })
      expect((await w.call('save', { path: join(run, 'a.pt') })).body.bytes).toBeGreaterThan(1000)
      for (const path of [join(dir, 'b.pt'), join(run, '..', 'b.pt'), join(run, 'out', 'b.pt')]) {
        const err = await w.call('save', { path }).catch((e) => e)
        expect(err.type).toBe('PathRefused')
        expect(err.path).toBe('path')
        expect(err.message).toMatch(/is outside the directories the driver allowed for writing at configure/)
      }
      await expect(w.call('load', { path: '/etc/passwd' })).rejects.toThrow(/allowed for reading/)
      expect(existsSync(join(dir, 'b.pt'))).toBe(false)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
