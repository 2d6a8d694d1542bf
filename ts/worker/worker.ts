// A worker as the driver sees it: a Python process (spawned here, or started elsewhere and
// attached), its Connection, and the policy for deaths, stalls and restarts.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { PY_DIR, ROOT, SCHEMAS_DIR } from '../paths.ts'
import { Connection, type CallOptions, type CallResult, type ConnectionOptions } from '../wire/connection.ts'
import { HEARTBEAT_MS_MAX, HEARTBEAT_MS_MIN, PROTOCOL_VERSION, type Hello } from '../wire/envelope.ts'
import { ClosedError, WorkerDiedError } from '../wire/errors.ts'
import type { OpArgs, OpName, OpResult } from '../wire/ops/index.ts'
import { schemaHash } from '../wire/schema-files.ts'
import { findPython } from './python.ts'

export interface WorkerOptions extends ConnectionOptions {
  /** Interpreter; default: PRCL_PYTHON, else the first candidate that imports torch, zmq, msgpack. */
  python?: string
  /** 'ipc' (default on Linux/macOS), 'tcp', or a full endpoint to bind (ipc://…, tcp://host:port). */
  transport?: string
  /** 'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N'. */
  device?: string
  /** How long a starting worker may take to say hello (importing torch takes seconds). */
  startTimeoutMs?: number
  heartbeatMs?: number
  /** Microseconds the worker polls for the next request after a reply before it sleeps. */
  spinUs?: number
  /** Threads decoding one request's images [default: the worker's CPUs, at most 8]. */
  decodeThreads?: number
  /** After a stalled request, kill the worker if it is still busy on it this much later. */
  stallKillMs?: number
  /** Start a fresh worker on the next call after this one died (spawned workers only). */
  restart?: boolean
  /** Where the worker's log lines go: 'inherit' (stderr, the default), 'silent', or a function. */
  log?: 'inherit' | 'silent' | ((line: string) => void)
  env?: Record<string, string>
  /** Called with the worker once its process is being started, before its hello (a worker group
   *  uses it to stop ranks that would wait for a rank that failed). */
  onSpawn?: (worker: Worker) => void
  /** A worker started elsewhere: ask it to exit when this one is closed (a remote group's ranks). */
  shutdownOnClose?: boolean
}

const live = new Set<ChildProcess>()
const openWorkers = new Set<Worker>()
let exitHookInstalled = false

/** Close every worker this process opened (the CLI calls it on SIGINT/SIGTERM). */
export async function closeAllWorkers(): Promise<void> {
  await Promise.all([...openWorkers].map((w) => w.close()))
}

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // Last resort: whatever way Node exits, no worker outlives it.
  process.on('exit', () => { for (const c of live) c.kill('SIGKILL') })
}

function endpointFor(transport: string): { endpoint: string; file?: string } {
  if (transport === 'tcp') return { endpoint: 'tcp://127.0.0.1:*' }
  if (transport === 'ipc') {
    // Unix socket paths are limited to ~107 bytes: keep it short, in the temp directory, in a
    // directory of its own that only this user can open (mkdtemp makes it 0700), so no other
    // user can connect to the socket.
    const dir = mkdtempSync(join(tmpdir(), 'prcl-'))
    return { endpoint: `ipc://${join(dir, 'w.sock')}`, file: join(dir, 'w.sock') }
  }
  if (transport.startsWith('ipc://')) return { endpoint: transport, file: transport.slice('ipc://'.length) }
  return { endpoint: transport }
}

export class Worker extends EventEmitter {
  private conn: Connection
  private readonly opts: WorkerOptions
  private child: ChildProcess | null = null
  /** Settles when `child` has exited (or could not start). */
  private childExited: Promise<unknown> | null = null
  private readonly socketFile: string | undefined
  /** The socket lives in a directory made for it (removed with it on close). */
  private readonly socketDir: boolean
  private disconnectTimer: NodeJS.Timeout | null = null
  private readonly spawned: boolean
  private python: string | null = null
  private stderrTail: string[] = []
  private dead: WorkerDiedError | null = null
  private starting: Promise<void> | null = null
  private closing: Promise<void> | null = null
  private stallTimer: NodeJS.Timeout | null = null

  private constructor(conn: Connection, opts: WorkerOptions, spawned: boolean, socketFile?: string, socketDir = false) {
    super()
    this.conn = conn
    this.opts = opts
    this.spawned = spawned
    this.socketFile = socketFile
    this.socketDir = socketDir
    openWorkers.add(this)
    conn.on('lost', (e: WorkerDiedError) => this.onDeath(e))
    conn.on('disconnect', () => this.onDisconnect())
    conn.on('deadline', (d: { id: number; op: string; stalled: boolean }) => this.onDeadline(d))
    conn.on('heartbeat', (hb) => this.emit('heartbeat', hb))
    conn.on('protocol-error', (e) => this.emit('protocol-error', e))
    conn.on('unmatched', (h) => this.emit('unmatched', h))
    conn.on('hello-refused', (r) => this.emit('hello-refused', r))
    conn.on('foreign-reply', (r) => this.emit('foreign-reply', r))
  }

  /** Spawn a Python worker on this machine and wait for its hello. */
  static async start(opts: WorkerOptions = {}): Promise<Worker> {
    const hb = opts.heartbeatMs ?? 1000
    if (!Number.isInteger(hb) || hb < HEARTBEAT_MS_MIN || hb > HEARTBEAT_MS_MAX) {
      throw new RangeError(`heartbeatMs must be an integer in ${HEARTBEAT_MS_MIN}..${HEARTBEAT_MS_MAX}, got ${hb}`)
    }
    const transport = opts.transport ?? (process.platform === 'win32' ? 'tcp' : 'ipc')
    const { endpoint, file } = endpointFor(transport)
    const conn = await Connection.open(endpoint, opts).catch((e) => {
      if (transport === 'ipc' && file) rmSync(dirname(file), { recursive: true, force: true })
      throw e
    })
    const w = new Worker(conn, opts, true, file, transport === 'ipc')
    try {
      opts.onSpawn?.(w)
      await w.spawnChild()
    } catch (e) {
      await w.close()
      throw e
    }
    return w
  }

  /** Bind `endpoint` and wait for a worker started elsewhere (`python -m prcl_worker --connect`). */
  static async attach(endpoint: string, opts: WorkerOptions = {}): Promise<Worker> {
    const conn = await Connection.open(endpoint, opts)
    const w = new Worker(conn, opts, false)
    try {
      checkHello(await conn.waitForHello(opts.startTimeoutMs ?? 60_000))
    } catch (e) {
      await w.close()
      throw e
    }
    return w
  }

  /** A worker started elsewhere whose hello arrived on a shared hub (a rank of a remote group). */
  static adopt(conn: Connection, opts: WorkerOptions = {}): Worker {
    return new Worker(conn, opts, false)
  }

  get hello(): Hello {
    const h = this.conn.hello
    if (!h) throw new WorkerDiedError('no worker is connected')
    return h
  }

  get endpoint(): string { return this.conn.endpoint }
  get pid(): number | undefined { return this.child?.pid ?? this.conn.hello?.pid }
  get alive(): boolean { return this.dead === null && this.closing === null }
  get connection(): Connection { return this.conn }
  get interpreter(): string | null { return this.python }

  /** Run an op on the worker. After a death, a spawned worker is restarted first. */
  async call<K extends OpName>(op: K, body: OpArgs<K>, opts?: CallOptions): Promise<CallResult<OpResult<K>>>
  async call<B = unknown>(op: string, body?: object, opts?: CallOptions): Promise<CallResult<B>>
  async call(op: string, body: object = {}, opts: CallOptions = {}): Promise<CallResult> {
    if (this.closing) throw new ClosedError(`call '${op}' on a closed worker`)
    if (this.starting) await this.starting
    if (this.dead) {
      if (!this.spawned || this.opts.restart === false) throw this.dead
      await this.restart()
    }
    // Closed while a restart was under way: the fresh worker is being stopped, not used.
    if (this.closing) throw new ClosedError(`call '${op}' on a worker closed while it restarted`)
    return this.conn.call(op, body, opts)
  }

  /** Replace the worker process with a fresh one (new instance, empty state). */
  async restart(): Promise<void> {
    if (!this.spawned) throw new Error('only a spawned worker can be restarted')
    if (this.starting) return this.starting
    this.starting = (async () => {
      if (this.child) await this.stopChild()
      this.dead = null
      await this.spawnChild()
      this.emit('restart', this.hello)
    })().finally(() => { this.starting = null })
    return this.starting
  }

  /** Ask the worker to exit, then make sure: SIGTERM, then SIGKILL. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        this.clearStall()
        if (this.disconnectTimer) clearTimeout(this.disconnectTimer)
        if (this.child) await this.stopChild()
        else if (this.opts.shutdownOnClose && !this.dead && this.conn.hello) {
          await this.conn.call('shutdown', {}, { timeoutMs: 2000 }).catch(() => this.conn.abort('the driver closed the run'))
        }
        this.conn.close()
        if (this.socketFile) rmSync(this.socketDir ? dirname(this.socketFile) : this.socketFile, { recursive: this.socketDir, force: true })
        openWorkers.delete(this)
      })()
    }
    return this.closing
  }

  /** Send a signal to the worker process (tests use SIGKILL and SIGSTOP). A worker started
   *  elsewhere is told to exit on its control socket instead (SIGKILL, SIGTERM). */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child) this.child.kill(signal)
    else if (!this.spawned && (signal === 'SIGKILL' || signal === 'SIGTERM')) this.conn.abort(`stopped by the driver (${signal})`)
  }

  // -- process management -------------------------------------------------------------------

  private async spawnChild(): Promise<void> {
    if (!this.python) this.python = (await findPython(this.opts.python)).python
    if (this.closing) throw new ClosedError('the worker was closed while it was starting')
    const instance = randomUUID().replace(/-/g, '')
    // Only this process's hello is adopted: another peer on the socket cannot pose as it.
    this.conn.expectInstance(instance)
    const args = ['-m', 'prcl_worker', '--connect', this.conn.endpoint, '--instance', instance,
      '--parent-pid', String(process.pid), '--schemas', SCHEMAS_DIR, '--device', this.opts.device ?? 'auto',
      '--heartbeat-ms', String(this.opts.heartbeatMs ?? 1000),
      ...(this.opts.spinUs === undefined ? [] : ['--spin-us', String(this.opts.spinUs)]),
      ...(this.opts.decodeThreads === undefined ? [] : ['--decode-threads', String(this.opts.decodeThreads)])]
    const env = { ...process.env, ...this.opts.env, PYTHONPATH: [PY_DIR, process.env.PYTHONPATH].filter(Boolean).join(':'), PYTHONUNBUFFERED: '1' }
    // detached: a Ctrl-C in the terminal reaches the driver only; the driver shuts the worker down.
    const child = spawn(this.python, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    installExitHook()
    live.add(child)
    this.child = child
    this.stderrTail = []
    const onLine = (line: string) => {
      this.stderrTail.push(line)
      if (this.stderrTail.length > 40) this.stderrTail.shift()
      const log = this.opts.log ?? 'inherit'
      if (typeof log === 'function') log(line)
      else if (log === 'inherit') process.stderr.write(`${line}\n`)
    }
    lines(child.stdout!, onLine)
    lines(child.stderr!, onLine)
    const exited = new Promise<WorkerDiedError>((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child)
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`
        const err = new WorkerDiedError(`the worker (pid ${child.pid}) ${how}`, code, signal, this.stderrTail.join('\n'))
        if (this.child === child) this.onDeath(err)
        resolve(err)
      })
      child.once('error', (e) => {
        live.delete(child)
        const err = new WorkerDiedError(`could not start the worker with ${this.python}: ${e.message}`)
        if (this.child === child) this.onDeath(err)
        resolve(err)
      })
    })
    this.childExited = exited
    const hello = this.conn.waitForHello(this.opts.startTimeoutMs ?? 120_000, false)
    const outcome = await Promise.race([hello, exited])
    if (outcome instanceof Error) { hello.catch(() => undefined); throw outcome }
    if (outcome.instance !== instance) throw new WorkerDiedError(`expected worker ${instance}, ${outcome.instance} said hello`)
    checkHello(outcome)
  }

  private async stopChild(): Promise<void> {
    const child = this.child
    if (!child) return
    const exited = this.childExited ?? undefined
    if (child.exitCode === null && child.signalCode === null) {
      if (this.dead === null && this.conn.hello) {
        await this.conn.call('shutdown', {}, { timeoutMs: 2000 }).catch(() => undefined)
      }
      if (!(await within(exited, 3000))) {
        child.kill('SIGTERM')
        if (!(await within(exited, 3000))) {
          child.kill('SIGKILL')
          await within(exited, 5000)
        }
      }
    }
    live.delete(child)
  }

  private onDeath(error: WorkerDiedError): void {
    if (this.dead) return
    this.dead = error
    this.clearStall()
    this.conn.dropPeer(error)
    // A worker that stopped beating but still runs (a hang, SIGSTOP) is of no further use.
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
    this.emit('death', error)
  }

  private onDisconnect(): void {
    if (this.closing || this.dead) return
    // A spawned worker's death is reported by its exit event (with code and signal), which
    // follows within milliseconds; a hang by missing heartbeats. An attached one has only its
    // heartbeats: the disconnect may be any other peer's (a bare TCP connect and close), so it
    // counts as a death only if no beat arrives within two intervals after it.
    if (this.spawned || this.disconnectTimer) return
    const since = Date.now()
    const interval = this.conn.hello?.heartbeat_ms ?? 1000
    this.disconnectTimer = setTimeout(() => {
      this.disconnectTimer = null
      if (this.closing || this.dead) return
      const last = this.conn.lastBeatAt
      if (last === null || last < since) this.onDeath(new WorkerDiedError(`the worker disconnected (no heartbeat for ${Date.now() - since} ms after a peer left)`))
    }, 2 * interval + 50)
    this.disconnectTimer.unref()
  }

  private onDeadline(d: { id: number; op: string; stalled: boolean }): void {
    this.emit('deadline', d)
    if (!d.stalled || !this.spawned) return
    // Cooperative cancel was sent; if the worker is still stuck on it later, replace it.
    this.clearStall()
    this.stallTimer = setTimeout(() => {
      if (this.conn.lastHeartbeat?.busy_id === d.id) {
        this.onDeath(new WorkerDiedError(`the worker stayed stalled on '${d.op}' (request ${d.id}) and was killed`))
      }
    }, this.opts.stallKillMs ?? 10_000)
    this.stallTimer.unref()
  }

  private clearStall(): void {
    if (this.stallTimer) clearTimeout(this.stallTimer)
    this.stallTimer = null
  }
}

/** Why this driver cannot work with the worker that said `hello` (protocol, schemas), or null. */
export function helloMismatch(hello: Hello): string | null {
  if (hello.protocol !== PROTOCOL_VERSION) return `the worker speaks protocol v${hello.protocol}; this driver speaks v${PROTOCOL_VERSION}`
  const mine = schemaHash()
  if (hello.schema_hash !== mine) {
    return `the worker's schemas (${hello.schema_hash}) differ from the driver's (${mine}); run \`npx prcl schemas\` (or install the worker package of this driver's version) and restart the worker`
  }
  return null
}

function checkHello(hello: Hello): void {
  const why = helloMismatch(hello)
  if (why) throw new WorkerDiedError(why)
}

function lines(stream: NodeJS.ReadableStream, onLine: (l: string) => void): void {
  let buf = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => {
    buf += chunk
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i))
      buf = buf.slice(i + 1)
    }
  })
  stream.on('end', () => { if (buf) onLine(buf) })
}

async function within(p: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (!p) return true
  let t: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((r) => { t = setTimeout(() => r(false), ms) })
  const r = await Promise.race([p.then(() => true), timeout])
  clearTimeout(t)
  return r
}
