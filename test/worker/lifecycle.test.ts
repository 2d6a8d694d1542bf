// A worker this suite spawns itself (not the shared one): killed, frozen, restarted, closed.
import { afterEach, describe, expect, it } from 'vitest'
import { WorkerDiedError } from '../../ts/wire/errors.ts'
import { PythonNotFoundError, findPython } from '../../ts/worker/python.ts'
import { Worker } from '../../ts/worker/worker.ts'

const opened: Worker[] = []
async function start(opts = {}): Promise<Worker> {
  const w = await Worker.start({ log: 'silent', device: 'cpu', ...opts })
  opened.push(w)
  return w
}
afterEach(async () => { await Promise.all(opened.splice(0).map((w) => w.close())) })

function processExists(pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) { if (cond()) return true; await new Promise((r) => setTimeout(r, 20)) }
  return cond()
}

describe('a worker killed mid-request', () => {
  it('fails the pending call, saying how it died, and the next call starts a fresh worker', async () => {
    const w = await start()
    const first = w.hello
    // Its deadline (the default 2 min) is far off: only the worker's death ends this call early.
    const pending = w.call('sleep', { ms: 30_000 })
    // Let the request reach the worker and start.
    expect(await waitFor(() => w.connection.lastHeartbeat?.busy_op === 'sleep', 20_000)).toBe(true)
    w.kill('SIGKILL')
    const err = await pending.catch((e) => e)
    expect(err).toBeInstanceOf(WorkerDiedError)
    expect(err.message).toMatch(new RegExp(`worker \\(pid ${first.pid}\\) was killed by SIGKILL`))
    expect(err.signal).toBe('SIGKILL')
    expect(await waitFor(() => !processExists(first.pid), 20_000)).toBe(true)

    const restarted = new Promise((resolve) => w.once('restart', resolve))
    const pong = await w.call('ping', { payload: 1 })
    expect(pong.body).toEqual({ pong: true, payload: 1 })
    await restarted
    expect(w.hello.instance).not.toBe(first.instance)
    expect(w.hello.pid).not.toBe(first.pid)
  })

  it('reports a clean exit code too', async () => {
    const w = await start({ restart: false })
    const pending = w.call('sleep', { ms: 30_000 })
    expect(await waitFor(() => w.connection.lastHeartbeat?.busy_op === 'sleep', 20_000)).toBe(true)
    process.kill(w.hello.pid, 'SIGTERM')
    const err = await pending.catch((e) => e)
    expect(err).toBeInstanceOf(WorkerDiedError)
    expect(err.message).toMatch(/exited with code 0/)
    // restart: false keeps the worker dead.
    await expect(w.call('ping', {})).rejects.toThrow(/exited with code 0/)
  })
})

describe('close() while a dead worker is being replaced', () => {
  it('leaves no process, whether it comes before or after the new one is spawned', async () => {
    for (const when of ['before', 'after'] as const) {
      const w = await start()
      const first = w.hello.pid
      w.kill('SIGKILL')
      expect(await waitFor(() => !w.alive, 20_000)).toBe(true)
      const call = w.call('ping', {}).then(() => 'answered', (e: Error) => e.message)
      if (when === 'after') expect(await waitFor(() => w.pid !== undefined && w.pid !== first, 20_000), when).toBe(true)
      const spawned = w.pid !== first ? w.pid : undefined
      await w.close()
      expect(await call, when).not.toBe('answered')
      if (when === 'after') expect(spawned).toBeDefined()
      if (spawned !== undefined) expect(await waitFor(() => !processExists(spawned), 20_000), `${when}: pid ${spawned}`).toBe(true)
      // Nothing was spawned after the close either.
      await new Promise((r) => setTimeout(r, 500))
      expect(w.pid === first || w.pid === spawned, when).toBe(true)
      if (w.pid !== undefined) expect(processExists(w.pid), when).toBe(false)
    }
  })
})

describe('a worker started with --connect', () => {
  it('says hello to each driver that binds its endpoint in turn', async () => {
    const { spawn } = await import('node:child_process')
    const { mkdtempSync, rmSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const { PY_DIR, ROOT, SCHEMAS_DIR } = await import('../../ts/paths.ts')
    const dir = mkdtempSync(join(tmpdir(), 'prcl-reattach-'))
    const endpoint = `ipc://${join(dir, 'w.sock')}`
    const child = spawn((await findPython()).python, ['-m', 'prcl_worker', '--connect', endpoint, '--parent-pid', String(process.pid),
      '--device', 'cpu', '--quiet', '--schemas', SCHEMAS_DIR], { cwd: ROOT, env: { ...process.env, PYTHONPATH: PY_DIR }, stdio: 'ignore' })
    try {
      const instances = new Set<string>()
      for (let i = 0; i < 4; i++) {
        const w = await Worker.attach(endpoint, { log: 'silent', startTimeoutMs: 60_000 })
        instances.add(w.hello.instance)
        expect((await w.call('ping', { payload: i })).body).toEqual({ pong: true, payload: i })
        await w.close()
      }
      expect(instances.size).toBe(1)
    } finally {
      child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})

describe('a frozen worker', () => {
  it('is declared lost after three missed heartbeats, killed, and replaced on the next call', async () => {
    const w = await start({ heartbeatMs: 300 })
    const pid = w.hello.pid
    // Its deadline (the default 2 min) is far off: only the missed heartbeats end this call early.
    const pending = w.call('sleep', { ms: 30_000 })
    expect(await waitFor(() => w.connection.lastHeartbeat?.busy_op === 'sleep', 20_000)).toBe(true)
    w.kill('SIGSTOP')
    const err = await pending.catch((e) => e)
    expect(err).toBeInstanceOf(WorkerDiedError)
    expect(err.message).toMatch(/sent no heartbeat for \d+ ms/)
    expect(await waitFor(() => !processExists(pid), 20_000)).toBe(true)
    expect((await w.call('ping', {})).body.pong).toBe(true)
  })
})

describe('closing', () => {
  it('leaves no process behind', async () => {
    const w = await start()
    const pid = w.hello.pid
    expect(processExists(pid)).toBe(true)
    await w.close()
    expect(processExists(pid)).toBe(false)
    await expect(w.call('ping', {})).rejects.toThrow(/closed/)
  })

  it('a worker over tcp works the same', async () => {
    const w = await start({ transport: 'tcp' })
    expect(w.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/)
    expect((await w.call('ping', { payload: [1, 2] })).body.payload).toEqual([1, 2])
  })
})

describe('interpreter discovery', () => {
  it('names every rejected candidate and why', async () => {
    const saved = process.env.PRCL_PYTHON
    process.env.PRCL_PYTHON = '/nonexistent/python3'
    try {
      const err = await findPython().catch((e) => e)
      expect(err).toBeInstanceOf(PythonNotFoundError)
      expect(err.message).toMatch(/\/nonexistent\/python3 \[PRCL_PYTHON\]: no such file/)
    } finally {
      if (saved === undefined) delete process.env.PRCL_PYTHON
      else process.env.PRCL_PYTHON = saved
    }
  })

  it('rejects an interpreter that lacks the worker modules, with the import error', async () => {
    const saved = process.env.PRCL_PYTHON
    delete process.env.PRCL_PYTHON // PRCL_PYTHON would win over the explicit choice
    try {
      const err = await findPython(process.execPath).catch((e) => e) // node is no Python
      expect(err).toBeInstanceOf(PythonNotFoundError)
      expect(err.rejected[0].source).toBe('worker.python')
    } finally {
      if (saved !== undefined) process.env.PRCL_PYTHON = saved
    }
  })
})
