// A group of workers for data-parallel training: one local Python worker per rank of a
// torch.distributed group. The driver spawns them with the torchrun environment (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), all at once (their process-group init waits
// for each other), waits for every hello and checks them together. A rank that dies takes the
// group down: every rank is stopped and calls fail with an error naming the rank.
import { EventEmitter } from 'node:events'
import { createServer } from 'node:net'
import type { CallOptions, CallResult } from '../wire/connection.ts'
import type { Hello } from '../wire/envelope.ts'
import { ClosedError, WorkerDiedError } from '../wire/errors.ts'
import type { OpArgs, OpName, OpResult } from '../wire/ops/index.ts'
import { Worker, type WorkerOptions } from './worker.ts'

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

/** A group that could not start, was refused, or lost a rank; `ranks` are the ranks at fault. */
export class WorkerGroupError extends Error {
  override name = 'WorkerGroupError'
  constructor(message: string, readonly ranks: number[], options?: { cause?: unknown }) {
    super(message, options)
  }
}

export class WorkerGroup extends EventEmitter {
  private failure: WorkerGroupError | null = null
  private readonly failed: Promise<WorkerGroupError>
  private onFailed!: (e: WorkerGroupError) => void
  private closing: Promise<void> | null = null

  private constructor(readonly workers: readonly Worker[], private readonly owned: boolean) {
    super()
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
      if (!this.failure && !this.closing && !(e instanceof WorkerDiedError)) await Promise.race([this.failed, delay(1500)])
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
    if (!this.closing) this.closing = this.owned ? Promise.all(this.workers.map((w) => w.close())).then(() => undefined) : Promise.resolve()
    return this.closing
  }

  private onRankDeath(rank: number, e: WorkerDiedError): void {
    if (this.failure || this.closing) return
    const pid = this.workers[rank]!.pid
    this.failure = new WorkerGroupError(`rank ${rank} of ${this.size}${pid ? ` (pid ${pid})` : ''} died, and every rank of the group was stopped: ${e.message}`, [rank], { cause: e })
    this.onFailed(this.failure)
    // The other ranks would wait for it in their next collective: stop them now.
    for (const w of this.workers) if (w !== this.workers[rank]) w.kill('SIGKILL')
    this.emit('failure', this.failure)
    void this.close()
  }
}

export interface GroupIssue { message: string; ranks: number[] }

/** What is wrong with a group's hellos (index = the rank each worker was started as; null: no
 *  hello): every rank in a group of `size`, 0..size−1 each exactly once, and one protocol, schema,
 *  torch version, backend and rendezvous across them. Empty when the group is sound. */
export function groupHelloIssues(hellos: ReadonlyArray<Hello | null | undefined>, size: number): GroupIssue[] {
  const issues: GroupIssue[] = []
  const add = (ranks: number[], message: string) => issues.push({ message, ranks })
  if (hellos.length !== size) add([], `${hellos.length} workers for a world of ${size}`)
  type Joined = { r: number; h: Hello; d: NonNullable<Hello['dist']> }
  const joined: Joined[] = []
  hellos.forEach((h, r) => {
    if (!h) return add([r], `rank ${r}: no hello`)
    const d = h.dist
    if (!d) return add([r], `rank ${r} (pid ${h.pid}) runs alone (hello.dist is ${d === null ? 'null' : 'missing'}): its worker did not join a torch.distributed group`)
    if (d.world_size !== size) add([r], `rank ${r} (pid ${h.pid}) is in a world of ${d.world_size}, not ${size}`)
    joined.push({ r, h, d })
  })
  for (let k = 0; k < size; k++) {
    const by = joined.filter((j) => j.d.rank === k)
    if (by.length === 0 && hellos[k]?.dist) add([k], `no worker is rank ${k}`)
    if (by.length > 1) add(by.map((j) => j.r), `rank ${k} is claimed by ${by.length} workers (pids ${by.map((j) => j.h.pid).join(', ')})`)
  }
  for (const j of joined) if (j.d.rank >= size) add([j.r], `a worker (pid ${j.h.pid}) says it is rank ${j.d.rank}, outside 0..${size - 1}`)
  const ref = joined[0]
  if (ref) {
    const fields: Array<[string, (j: Joined) => unknown]> = [
      ['protocol', (j) => j.h.protocol], ['schema hash', (j) => j.h.schema_hash], ['torch', (j) => j.h.torch],
      ['backend', (j) => j.d.backend], ['rendezvous', (j) => j.d.master],
    ]
    for (const [name, get] of fields) {
      for (const j of joined.slice(1)) {
        if (get(j) !== get(ref)) add([j.r], `rank ${j.r} has ${name} ${JSON.stringify(get(j))}, rank ${ref.r} ${JSON.stringify(get(ref))}`)
      }
    }
  }
  const byDevice = new Map<string, number[]>()
  hellos.forEach((h, r) => { if (h?.device.startsWith('cuda')) byDevice.set(h.device, [...(byDevice.get(h.device) ?? []), r]) })
  for (const [dev, ranks] of byDevice) if (ranks.length > 1) add(ranks, `ranks ${ranks.join(', ')} share device ${dev} (set world.devices, one per rank)`)
  return issues
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

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
