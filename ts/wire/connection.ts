// The driver's end of the wire: request ids, deadlines, credits, heartbeats over a Hub (a bound
// ROUTER). One Connection talks to one worker (its main DEALER and its control DEALER): alone on
// its hub (`open`), or as one rank of a group that shares a hub (`adopt`).
import { EventEmitter } from 'node:events'
import type { CurveServer } from './curve.ts'
import { Hub } from './hub.ts'
import { decode, encodeTensors, packHeader, unpackHeader } from './codec.ts'
import { HEARTBEAT_MS_MAX, HEARTBEAT_MS_MIN, MAX_HEADER_BYTES, PROTOCOL_VERSION, UINT32_MAX, type Heartbeat, type Hello } from './envelope.ts'
import { ClosedError, DeadlineError, ProtocolError, WorkerDiedError, WorkerError } from './errors.ts'
import type { Tensors } from './tensor.ts'

export interface ConnectionOptions {
  /** Requests in flight at once (K); more wait in the driver, not in a socket queue. */
  maxInFlight?: number
  /** Deadline of a call that names none. */
  defaultTimeoutMs?: number
  /** Beats missed before the worker counts as lost. */
  heartbeatMisses?: number
  /** CURVE on the bound endpoint (connections that `open` their own hub). */
  curve?: CurveServer | null
}

export interface CallOptions {
  tensors?: Tensors
  timeoutMs?: number
}

export interface CallResult<B = unknown> {
  id: number
  body: B
  tensors: Tensors
  timing?: { queued_ms: number; run_ms: number }
}

interface Pending {
  id: number
  op: string
  header: Record<string, unknown>
  frames: Buffer[] // tensor frames
  sent: boolean
  deadline: number
  timer: NodeJS.Timeout
  settled: boolean
  resolve: (r: CallResult) => void
  reject: (e: Error) => void
}

interface Peer {
  identity: Buffer
  control: Buffer
  hello: Hello
  lastBeat: number
  beat: Heartbeat | null
}

export class Connection extends EventEmitter {
  readonly endpoint: string
  private readonly hub: Hub
  /** Owns its hub: sees every message on it and closes it on close. */
  private readonly exclusive: boolean
  private readonly maxInFlight: number
  private readonly defaultTimeoutMs: number
  private readonly heartbeatMisses: number
  private peer: Peer | null = null
  private readonly pending = new Map<number, Pending>()
  private readonly queue: Pending[] = []
  private inFlight = 0
  private nextId = Math.floor(Math.random() * UINT32_MAX)
  private watchdog: NodeJS.Timeout | null = null
  private closed = false
  /** The only instance whose hello is accepted (a spawned worker's, named on its command line). */
  private expected: string | null = null
  /** Replies and errors for a pending id that came from another identity or instance (ignored). */
  foreignReplies = 0
  /** Hellos not adopted (another instance than expected or connected, a bad heartbeat interval). */
  refusedHellos = 0

  private constructor(hub: Hub, opts: ConnectionOptions, exclusive: boolean) {
    super()
    this.hub = hub
    this.exclusive = exclusive
    this.endpoint = hub.endpoint
    this.maxInFlight = opts.maxInFlight ?? 2
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? 120_000
    this.heartbeatMisses = opts.heartbeatMisses ?? 3
    if (!(this.maxInFlight >= 1)) throw new RangeError(`maxInFlight must be >= 1, got ${opts.maxInFlight}`)
  }

  /** Bind a ROUTER at `endpoint` (ipc://path, tcp://host:port, tcp://127.0.0.1:* for any port). */
  static async open(endpoint: string, opts: ConnectionOptions = {}): Promise<Connection> {
    const hub = await Hub.open(endpoint, { curve: opts.curve })
    const conn = new Connection(hub, opts, true)
    hub.setFallback((identity, frames) => conn.onMessage(identity, frames))
    hub.on('disconnect', () => conn.emit('disconnect'))
    hub.on('refused', (peer) => conn.emit('refused', peer))
    hub.on('protocol-error', (e) => { if (!conn.closed) conn.emit('protocol-error', e) })
    return conn
  }

  /** The connection of a worker that said `hello` from `identity` on a shared hub. */
  static adopt(hub: Hub, identity: Buffer, hello: Hello, opts: ConnectionOptions = {}): Connection {
    const conn = new Connection(hub, opts, false)
    hub.route(hello.instance, (id, frames) => conn.onMessage(id, frames))
    conn.onHello(identity, hello)
    return conn
  }

  get hello(): Hello | null {
    return this.peer?.hello ?? null
  }

  get lastHeartbeat(): Heartbeat | null {
    return this.peer?.beat ?? null
  }

  get inFlightCount(): number {
    return this.inFlight
  }

  /** Epoch ms of the connected worker's last heartbeat (or hello); null when none is connected. */
  get lastBeatAt(): number | null {
    return this.peer?.lastBeat ?? null
  }

  /** Accept a hello from `instance` only (the one this driver spawned); null: the first hello
   *  adopted, and no other instance's while it is connected. */
  expectInstance(instance: string | null): void {
    this.expected = instance
  }

  /** Resolves with the next hello (or the current one, if a worker is already connected). */
  waitForHello(timeoutMs: number, current = true): Promise<Hello> {
    if (current && this.peer) return Promise.resolve(this.peer.hello)
    return new Promise((resolve, reject) => {
      const onHello = (h: Hello) => { cleanup(); resolve(h) }
      const onClose = () => { cleanup(); reject(new ClosedError('connection closed while waiting for the worker')) }
      const timer = setTimeout(() => {
        cleanup()
        reject(new WorkerDiedError(`no worker said hello on ${this.endpoint} within ${timeoutMs} ms`))
      }, timeoutMs)
      const cleanup = () => { clearTimeout(timer); this.off('hello', onHello); this.off('closed', onClose) }
      this.on('hello', onHello)
      this.on('closed', onClose)
    })
  }

  call<B = unknown>(op: string, body: object = {}, opts: CallOptions = {}): Promise<CallResult<B>> {
    if (this.closed) return Promise.reject(new ClosedError(`call '${op}' on a closed connection`))
    if (!this.peer) return Promise.reject(new WorkerDiedError(`call '${op}': no worker is connected to ${this.endpoint}`))
    const id = this.nextId
    this.nextId = (this.nextId + 1) % (UINT32_MAX + 1)
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs
    // Encoding checks tensor sizes, so a bad tensor throws here, synchronously, with its name.
    const { meta, frames } = encodeTensors(opts.tensors ?? {})
    const header = { v: PROTOCOL_VERSION, kind: 'req', id, op, instance: this.peer.hello.instance, body, tensors: meta }
    return new Promise<CallResult<B>>((resolve, reject) => {
      const p: Pending = {
        id, op, header, frames, sent: false, deadline: Date.now() + timeoutMs, settled: false,
        resolve: resolve as (r: CallResult) => void, reject,
        timer: setTimeout(() => this.onDeadline(p), timeoutMs),
      }
      this.pending.set(id, p)
      this.queue.push(p)
      this.pump()
    })
  }

  /** Send frames as they are, for diagnostics and fuzzing; the worker's answers come as events. */
  async sendRaw(frames: Buffer[]): Promise<void> {
    if (!this.peer) throw new WorkerDiedError('no worker is connected')
    await this.hub.send([this.peer.identity, ...frames], Date.now() + this.defaultTimeoutMs)
  }

  /** Tell the worker's control thread to exit the process now (it answers even while the main
   *  thread waits in a collective): how a group stops ranks it did not spawn. */
  abort(reason: string): void {
    const peer = this.peer
    if (!peer) return
    const frame = packHeader({ v: PROTOCOL_VERSION, kind: 'abort', instance: peer.hello.instance, reason: reason.slice(0, 1000) })
    this.hub.send([peer.control, frame], Date.now() + 1000).catch(() => undefined)
  }

  /** Fail every queued and in-flight request (the worker died or was replaced). */
  failAll(error: Error): void {
    for (const p of [...this.pending.values()]) this.settle(p, error)
    this.queue.length = 0
    this.inFlight = 0
  }

  /** Forget the connected worker: calls fail until the next hello. */
  dropPeer(error: Error): void {
    this.failAll(error)
    this.peer = null
    this.stopWatchdog()
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.stopWatchdog()
    this.failAll(new ClosedError('connection closed'))
    if (this.exclusive) this.hub.close()
    else if (this.peer) this.hub.unroute(this.peer.hello.instance)
    this.emit('closed')
  }

  // -- sending ------------------------------------------------------------------------------

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const p = this.queue.shift()!
      if (p.settled) continue
      this.inFlight++
      const peer = this.peer
      if (!peer) { this.settle(p, new WorkerDiedError(`call '${p.op}': the worker is gone`)); continue }
      // The remaining budget travels with the request so a late arrival is refused, not run.
      const frames = [packHeader({ ...p.header, deadline_ms: p.deadline - Date.now() }), ...p.frames]
      if (frames[0]!.length > MAX_HEADER_BYTES) {
        // The worker reads no header this large: refuse here, naming what made it so.
        this.inFlight--
        this.finish(p.id)
        this.settle(p, new ProtocolError(`call '${p.op}': its header is ${frames[0]!.length} bytes, over the worker's limit of ${MAX_HEADER_BYTES}${biggestField(p.header.body)}; send large data as tensors`))
        continue
      }
      p.sent = true
      p.frames = []
      this.hub.send([peer.identity, ...frames], p.deadline).catch((e: Error) => {
        this.settle(p, new WorkerDiedError(`call '${p.op}': could not reach the worker (${e.message})`))
      })
    }
  }

  private settle(p: Pending, outcome: Error | CallResult): void {
    if (!p.settled) {
      p.settled = true
      clearTimeout(p.timer)
      if (outcome instanceof Error) p.reject(outcome)
      else p.resolve(outcome)
    }
  }

  /** The request's answer arrived (or it can no longer arrive): free its credit. */
  private finish(id: number): Pending | undefined {
    const p = this.pending.get(id)
    if (!p) return undefined
    this.pending.delete(id)
    if (p.sent) this.inFlight = Math.max(0, this.inFlight - 1)
    this.pump()
    return p
  }

  private onDeadline(p: Pending): void {
    if (!p.sent) {
      // Never sent: it waited for a credit the whole time.
      this.pending.delete(p.id)
      const i = this.queue.indexOf(p)
      if (i >= 0) this.queue.splice(i, 1)
      this.settle(p, new DeadlineError(`call '${p.op}' (request ${p.id}) waited past its deadline for a free slot`, p.op, p.id, false))
      return
    }
    // Sent: it keeps its credit until the worker answers, so a stuck worker is not flooded.
    const beat = this.peer?.beat
    const stalled = beat?.busy_id === p.id
    const msg = stalled
      ? `call '${p.op}' (request ${p.id}) stalled: the worker has been busy on it for ${Math.round(beat!.busy_for_ms ?? 0)} ms, past its deadline`
      : `call '${p.op}' (request ${p.id}) got no answer before its deadline`
    this.settle(p, new DeadlineError(msg, p.op, p.id, stalled))
    this.cancel(p.id)
    this.emit('deadline', { id: p.id, op: p.op, stalled })
  }

  /** Ask the worker (on its control socket) to stop working on a request. */
  cancel(id: number): void {
    const peer = this.peer
    if (!peer) return
    const frame = packHeader({ v: PROTOCOL_VERSION, kind: 'cancel', id, instance: peer.hello.instance })
    this.hub.send([peer.control, frame], Date.now() + 1000).catch(() => undefined)
  }

  // -- receiving ----------------------------------------------------------------------------

  private onMessage(identity: Buffer, frames: Buffer[]): void {
    let msg
    try {
      msg = decode(frames)
    } catch (e) {
      // A reply we cannot read still answers its request: fail that request with the reason.
      const id = safeId(frames[0])
      const p = id === null ? undefined : this.finish(id)
      if (p) this.settle(p, e as Error)
      else this.emit('protocol-error', e)
      return
    }
    switch (msg.kind) {
      case 'hello':
        this.onHello(identity, msg.header)
        return
      case 'hb':
        if (this.peer && msg.header.instance === this.peer.hello.instance && identity.equals(this.peer.control)) {
          this.peer.lastBeat = Date.now()
          this.peer.beat = msg.header
          this.emit('heartbeat', msg.header)
        }
        return
      case 'rep': {
        if (this.foreign(identity, msg.header)) return
        const p = this.finish(msg.header.id)
        if (!p) { this.emit('unmatched', msg.header); return }
        this.settle(p, { id: p.id, body: msg.header.body, tensors: msg.tensors, timing: msg.header.timing })
        return
      }
      case 'err': {
        if (this.foreign(identity, msg.header)) return
        const p = msg.header.id === null ? undefined : this.finish(msg.header.id)
        if (!p) { this.emit('unmatched', msg.header); return }
        this.settle(p, new WorkerError(msg.header.error, msg.header.op ?? p.op, p.id))
        return
      }
      default:
        this.emit('protocol-error', new ProtocolError('ignored a message of unknown kind'))
    }
  }

  /** A reply or error not from the connected worker's main socket: ignored (it must not settle a
   *  request that was sent to another peer), counted and reported. */
  private foreign(identity: Buffer, header: { id: number | null; instance: string }): boolean {
    const peer = this.peer
    if (peer && identity.equals(peer.identity) && header.instance === peer.hello.instance) return false
    this.foreignReplies++
    this.emit('foreign-reply', { id: header.id, instance: header.instance, identity: identity.toString('latin1').slice(0, 64) })
    return true
  }

  /** Why a hello from `identity` is not adopted, or null. */
  private refuseHello(identity: Buffer, hello: Hello): string | null {
    if (identity.toString('latin1') !== hello.instance) return `a hello for instance ${hello.instance} came from another socket (${identity.toString('latin1').slice(0, 64)})`
    const hb = hello.heartbeat_ms
    if (!Number.isInteger(hb) || hb < HEARTBEAT_MS_MIN || hb > HEARTBEAT_MS_MAX) {
      return `worker ${hello.instance} announced heartbeat_ms ${hb}, outside ${HEARTBEAT_MS_MIN}..${HEARTBEAT_MS_MAX}`
    }
    if (this.expected !== null) {
      return hello.instance === this.expected ? null : `a hello from instance ${hello.instance}, but this driver started ${this.expected}`
    }
    if (this.peer && this.peer.hello.instance !== hello.instance) {
      return `a hello from instance ${hello.instance} while worker ${this.peer.hello.instance} is connected`
    }
    return null
  }

  private onHello(identity: Buffer, hello: Hello): void {
    const why = this.refuseHello(identity, hello)
    if (why) {
      this.refusedHellos++
      this.emit('hello-refused', { instance: hello.instance, reason: why })
      return
    }
    if (this.peer && this.peer.hello.instance !== hello.instance) {
      this.failAll(new WorkerDiedError(`worker ${this.peer.hello.instance} was replaced by ${hello.instance}`))
    }
    this.peer = {
      identity: Buffer.from(identity),
      control: Buffer.from(`${hello.instance}/ctl`),
      hello,
      lastBeat: Date.now(),
      beat: this.peer?.hello.instance === hello.instance ? this.peer.beat : null,
    }
    this.startWatchdog(hello.heartbeat_ms)
    this.emit('hello', hello)
  }

  private startWatchdog(intervalMs: number): void {
    this.stopWatchdog()
    const limit = intervalMs * this.heartbeatMisses + intervalMs / 2
    this.watchdog = setInterval(() => {
      const peer = this.peer
      if (peer && Date.now() - peer.lastBeat > limit) {
        this.emit('lost', new WorkerDiedError(`worker ${peer.hello.instance} (pid ${peer.hello.pid}) sent no heartbeat for ${Date.now() - peer.lastBeat} ms`))
      }
    }, intervalMs)
    this.watchdog.unref()
  }

  private stopWatchdog(): void {
    if (this.watchdog) clearInterval(this.watchdog)
    this.watchdog = null
  }
}

/** ' (the biggest body field: name, bytes)' for a header over the limit. */
function biggestField(body: unknown): string {
  if (body === null || typeof body !== 'object') return ''
  let best: [string, number] | null = null
  for (const [k, v] of Object.entries(body)) {
    const n = packHeader({ v }).length
    if (!best || n > best[1]) best = [k, n]
  }
  return best ? ` (the biggest body field is '${best[0]}', ${best[1]} bytes)` : ''
}

function safeId(frame: Buffer | undefined): number | null {
  if (!frame) return null
  try {
    const id = (unpackHeader(frame) as { id?: unknown } | null)?.id
    return typeof id === 'number' ? id : null
  } catch {
    return null
  }
}
