// A group of workers for data-parallel training: one Python worker per rank of a
// torch.distributed group. Local ranks are spawned by the driver with the torchrun environment
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), all at once (their process-group init
// waits for each other); remote ones are started by torchrun/srun and connect (remote.ts). Either
// way every hello is checked together. A rank that dies takes the group down: every rank is
// stopped and calls fail with an error naming the rank.
import { EventEmitter } from 'node:events'
import { createServer } from 'node:net'
import type { CallOptions, CallResult } from '../wire/connection.ts'
import type { Hello } from '../wire/envelope.ts'
import type { Hub } from '../wire/hub.ts'
import { ClosedError, messageOf, WorkerDiedError } from '../wire/errors.ts'
import type { OpArgs, OpName, OpResult } from '../wire/ops/index.ts'
import { groupHelloIssues, WorkerGroupError } from './group-issues.ts'
import { gatherRanks, type RemoteOptions } from './remote.ts'
import { Worker, type WorkerOptions } from './worker.ts'

export { groupHelloIssues, WorkerGroupError, type GroupIssue } from './group-issues.ts'

export interface GroupOptions extends Omit<WorkerOptions, 'restart' | 'onSpawn'> {
  /** Ranks (world size). 1: one plain worker, no torch.distributed group. */
  size: number
  /** One device per rank; default `device` for every rank ('cuda' becomes cuda:<rank>). */
  devices?: readonly string[] | null
  /** The rendezvous address and port (default 127.0.0.1 and a free port). */
  masterAddr?: string
  masterPort?: number
  /** Extra environment of one rank, over the torchrun variables (tests misconfigure a rank). */
  rankEnv?: (rank: number) => Record<string, string>
}

/** How long a remote rank's death takes to show: it has no exit event, only missed heartbeats
 *  (3 beats of 1 s by default, checked every beat). */
const REMOTE_DEATH_MS = 6000

export class WorkerGroup extends EventEmitter {
  private failure: WorkerGroupError | null = null
  private readonly failed: Promise<WorkerGroupError>
  private onFailed!: (e: WorkerGroupError) => void
  private closing: Promise<void> | null = null
  private readonly hellos: ReadonlyArray<Hello | null>

  private constructor(readonly workers: readonly Worker[], private readonly owned: boolean, private readonly hub: Hub | null = null) {
    super()
    // Kept: a dead worker's connection forgets its hello, and the error should still name it.
    this.hellos = workers.map((w) => { try { return w.hello } catch { return null } })
    this.failed = new Promise((resolve) => { this.onFailed = resolve })
    if (workers.length > 1) workers.forEach((w, r) => w.on('death', (e: WorkerDiedError) => this.onRankDeath(r, e)))
  }

  /** A group of one existing worker (not closed by the group's close). */
  static of(worker: Worker): WorkerGroup {
    return new WorkerGroup([worker], false)
  }

  /** Spawn `size` local workers as ranks 0..size−1 and check their hellos together. */
  static async start(opts: GroupOptions): Promise<WorkerGroup> {
    const { size, devices, masterAddr, masterPort, rankEnv, ...workerOpts } = opts
    if (!Number.isInteger(size) || size < 1) throw new Error(`a worker group needs an integer size ≥ 1, got ${size}`)
    if (devices && devices.length !== size) throw new Error(`a worker group of ${size} needs ${size} devices, got ${devices.length}`)
    const device = (r: number) => devices?.[r] ?? (size > 1 && workerOpts.device === 'cuda' ? `cuda:${r}` : workerOpts.device)
    if (size === 1) return new WorkerGroup([await Worker.start({ ...workerOpts, device: device(0) })], true)
    const addr = masterAddr ?? '127.0.0.1'
    const port = masterPort ?? await freePort(addr)
    const spawned: Array<Worker | undefined> = new Array(size)
    let firstFailed: number | null = null
    const stopAll = () => { for (const w of spawned) if (w) { w.kill('SIGKILL'); void w.close() } }
    const starts = Array.from({ length: size }, (_, r) => Worker.start({
      ...workerOpts, restart: false, device: device(r),
      env: {
        ...workerOpts.env, RANK: String(r), WORLD_SIZE: String(size), LOCAL_RANK: String(r), LOCAL_WORLD_SIZE: String(size),
        MASTER_ADDR: addr, MASTER_PORT: String(port), ...rankEnv?.(r),
      },
      onSpawn: (w) => { spawned[r] = w; if (firstFailed !== null) { w.kill('SIGKILL'); void w.close() } },
    }).catch((e: unknown) => {
      // Ranks wait for each other in the process-group init: one that fails would hold the rest.
      if (firstFailed === null) { firstFailed = r; stopAll() }
      throw e
    }))
    const settled = await Promise.allSettled(starts)
    const started = settled.map((s) => (s.status === 'fulfilled' ? s.value : null))
    if (firstFailed !== null) {
      const first = firstFailed
      await Promise.all(started.map((w) => w?.close()))
      const why = (settled[first] as PromiseRejectedResult).reason
      const others = settled.map((_, r) => r).filter((r) => r !== first)
      throw new WorkerGroupError(`the worker group of ${size} did not start: rank ${first} failed: ${messageOf(why)}` +
        (others.length ? `; ${others.length > 1 ? 'ranks' : 'rank'} ${others.join(', ')} ${others.length > 1 ? 'were' : 'was'} stopped` : ''), [first], { cause: why })
    }
    const workers = started as Worker[]
    const hellos = workers.map((w) => w.hello)
    const issues = groupHelloIssues(hellos, size)
    if (issues.length) {
      await Promise.all(workers.map((w) => w.close()))
      throw new WorkerGroupError(`the worker group of ${size} was refused: ${issues.map((i) => i.message).join('; ')}`, [...new Set(issues.flatMap((i) => i.ranks))])
    }
    // Ordered by the rank each worker reports (the same as started, when the environment holds).
    return new WorkerGroup(workers.map((_, r) => workers[hellos.findIndex((h) => h.dist!.rank === r)]!), true)
  }

  /** Wait on `listen` for `size` ranks started elsewhere (torchrun/srun … --connect) and check
   *  them together; closing the group shuts them down. */
  static async connect(opts: RemoteOptions): Promise<WorkerGroup> {
    const { workers, hub } = await gatherRanks(opts)
    return new WorkerGroup(workers, true, hub)
  }

  get size(): number { return this.workers.length }
  get pids(): Array<number | undefined> { return this.workers.map((w) => w.pid) }
  /** Why the group stopped (a rank died), or null while it stands. */
  get error(): WorkerGroupError | null { return this.failure }

  /** Run an op on one rank. Once a rank has died, every call fails with the group's error. */
  async call<K extends OpName>(rank: number, op: K, body: OpArgs<K>, opts?: CallOptions): Promise<CallResult<OpResult<K>>>
  async call(rank: number, op: string, body: object = {}, opts: CallOptions = {}): Promise<CallResult> {
    const w = this.workers[rank]
    if (!w) throw new Error(`no rank ${rank} in a group of ${this.size}`)
    if (this.size === 1) return w.call(op, body, opts)
    if (this.failure) throw this.failure
    try {
      return await w.call(op, body, opts)
    } catch (e) {
      // A rank's collective fails when a peer dies, often before that peer's exit is seen here:
      // give the death a moment to arrive, so the error names the rank that died.
      if (!this.failure && !this.closing && !(e instanceof WorkerDiedError)) await Promise.race([this.failed, delay(this.hub ? REMOTE_DEATH_MS : 1500)])
      if (this.failure) throw this.failure
      if (e instanceof Error && !(e instanceof ClosedError)) e.message = `rank ${rank}: ${e.message}`
      throw e
    }
  }

  /** The same op on every rank at once (bodyOf gives each rank's arguments), replies in rank order. */
  all<K extends OpName>(op: K, bodyOf: (rank: number) => OpArgs<K>, opts?: CallOptions): Promise<Array<CallResult<OpResult<K>>>> {
    return Promise.all(this.workers.map((_, r) => this.call(r, op, bodyOf(r), opts)))
  }

  /** Close every rank (a group of one existing worker leaves it open). Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = this.owned ? Promise.all(this.workers.map((w) => w.close())).then(() => { this.hub?.close() }) : Promise.resolve()
    }
    return this.closing
  }

  private onRankDeath(rank: number, e: WorkerDiedError): void {
    if (this.failure || this.closing) return
    const h = this.hellos[rank]
    const where = h ? ` (pid ${h.pid}${this.hub ? ` on ${h.host}` : ''})` : ''
    this.failure = new WorkerGroupError(`rank ${rank} of ${this.size}${where} died, and every rank of the group was stopped: ${e.message}`, [rank], { cause: e })
    this.onFailed(this.failure)
    // The other ranks would wait for it in their next collective: stop them now.
    for (const w of this.workers) if (w !== this.workers[rank]) w.kill('SIGKILL')
    this.emit('failure', this.failure)
    void this.close()
  }
}

/** A TCP port free on `host` now (the rendezvous binds it moments later). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => { const t = setTimeout(r, ms); t.unref() })
}
