// Ranks started elsewhere — `torchrun … -m prcl_worker --connect tcp://DRIVER:PORT` on any
// machine, or `srun` with the same environment — gathered on one bound endpoint. The driver
// waits until `size` workers said hello, then checks them together (one protocol, one schema,
// one torch, distinct ranks 0..size−1, one rendezvous) and refuses naming the missing or
// mismatched ranks. Off this machine the endpoint needs CURVE keys (or an explicit `insecure`).
import { EventEmitter } from 'node:events'
import { Connection, type ConnectionOptions } from '../wire/connection.ts'
import { listenIssue, type CurveServer, type RefusedPeer } from '../wire/curve.ts'
import { decode } from '../wire/codec.ts'
import type { Hello } from '../wire/envelope.ts'
import { Hub } from '../wire/hub.ts'
import { groupHelloIssues, WorkerGroupError, type GroupIssue } from './group-issues.ts'
import { helloMismatch, Worker } from './worker.ts'

export interface RemoteOptions extends ConnectionOptions {
  size: number
  /** The endpoint the ranks connect to, e.g. tcp://0.0.0.0:5555. */
  listen: string
  curve?: CurveServer | null
  /** Allow an endpoint off this machine without keys. */
  insecure?: boolean
  /** How long to wait for every rank's hello. */
  waitMs?: number
  /** Progress: a rank said hello, a peer was refused, a stray hello was ignored. */
  events?: EventEmitter
}

export interface Gathered { workers: Worker[]; hub: Hub }

function describe(h: Hello): string {
  return `pid ${h.pid} on ${h.host}${h.dist ? `, rank ${h.dist.rank} of ${h.dist.world_size}` : ', no rank'}`
}

/** Bind `listen`, wait for `size` ranks, check them; the ranks in rank order. */
export async function gatherRanks(o: RemoteOptions): Promise<Gathered> {
  const why = listenIssue(o.listen, !!o.curve, !!o.insecure)
  if (why) throw new WorkerGroupError(why, [])
  const hub = await Hub.open(o.listen, { curve: o.curve })
  const events = o.events ?? new EventEmitter()
  hub.on('refused', (p: RefusedPeer) => events.emit('refused', p))
  const arrived = new Map<string, { identity: Buffer; hello: Hello }>()
  let assembling = true
  let done!: () => void
  const all = new Promise<void>((resolve) => { done = resolve })
  hub.setFallback((identity, frames) => {
    let msg
    try { msg = decode(frames) } catch { return }
    if (msg.kind !== 'hello') return // beats of a worker whose hello is not in yet, or of a stranger
    const hello = msg.header
    if (!assembling) { events.emit('stray', hello); return }
    if (identity.toString('latin1') !== hello.instance) return // a hello must come from its own socket
    const again = arrived.has(hello.instance)
    arrived.set(hello.instance, { identity: Buffer.from(identity), hello })
    if (!again) events.emit('rank', hello, arrived.size, o.size)
    if (arrived.size >= o.size) done()
  })
  const waitMs = o.waitMs ?? 600_000
  let timer: NodeJS.Timeout | undefined
  const timedOut = await Promise.race([all.then(() => false), new Promise<boolean>((r) => { timer = setTimeout(() => r(true), waitMs) })])
  clearTimeout(timer)
  assembling = false
  const peers = [...arrived.values()]
  const conns = peers.map((p) => Connection.adopt(hub, p.identity, p.hello, o))
  const refuse = (message: string, ranks: number[]): never => {
    for (const c of conns) { c.abort(`the driver refused the group: ${message}`); c.close() }
    setTimeout(() => hub.close(), 200).unref() // let the aborts leave
    throw new WorkerGroupError(message, ranks)
  }
  if (timedOut) {
    const claimed = new Set(peers.map((p) => p.hello.dist?.rank))
    const missing = Array.from({ length: o.size }, (_, r) => r).filter((r) => !claimed.has(r))
    refuse(`waited ${Math.round(waitMs / 1000)} s on ${hub.endpoint} for ${o.size} ranks; ${peers.length} said hello` +
      (peers.length ? ` (${peers.map((p) => describe(p.hello)).join('; ')})` : '') +
      `; missing: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`, missing)
  }
  const issues: GroupIssue[] = []
  peers.forEach((p) => {
    const m = helloMismatch(p.hello)
    if (m) issues.push({ message: `${describe(p.hello)}: ${m}`, ranks: p.hello.dist ? [p.hello.dist.rank] : [] })
  })
  // Ordered by the rank each reports, so the issues name ranks as the user launched them.
  const order = o.size === 1 ? peers : [...peers].sort((a, b) => (a.hello.dist?.rank ?? 1e9) - (b.hello.dist?.rank ?? 1e9))
  if (o.size > 1) {
    for (const i of groupHelloIssues(order.map((p) => p.hello), o.size)) issues.push({ message: i.message, ranks: i.ranks.map((k) => order[k]?.hello.dist?.rank ?? k) })
  }
  if (issues.length) refuse(`the ${o.size} workers on ${hub.endpoint} were refused: ${issues.map((i) => i.message).join('; ')}`, [...new Set(issues.flatMap((i) => i.ranks))])
  const byInstance = new Map(conns.map((c) => [c.hello!.instance, c]))
  const workers = order.map((p) => Worker.adopt(byInstance.get(p.hello.instance)!, { shutdownOnClose: true }))
  return { workers, hub }
}
