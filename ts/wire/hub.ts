// One bound ROUTER and what every connection on it shares: the receive loop, one send at a time
// (zeromq.js rejects a second concurrent send with EBUSY) and, on tcp between machines, CURVE.
// A single worker's connection owns its hub and sees every message; the ranks of a remote group
// share one hub (they all connect to one endpoint) and each gets the messages of its instance.
import { EventEmitter } from 'node:events'
import { Router } from 'zeromq'
import { authorize, type CurveServer } from './curve.ts'
import { MAX_FRAME_BYTES } from './envelope.ts'

export type Handler = (identity: Buffer, frames: Buffer[]) => void

export interface HubOptions {
  /** Refuse every peer that does not hold one of `curve.authorized` (and the driver's public key). */
  curve?: CurveServer | null
}

let domainCounter = 0

export class Hub extends EventEmitter {
  readonly endpoint: string
  private readonly router: Router
  private readonly routes = new Map<string, Handler>()
  private fallback: Handler | null = null
  private sendChain: Promise<unknown> = Promise.resolve()
  private sending = 0
  private closed = false
  private release: (() => void) | null

  private constructor(router: Router, endpoint: string, release: (() => void) | null) {
    super()
    this.router = router
    this.endpoint = endpoint
    this.release = release
  }

  /** Bind a ROUTER at `endpoint` (ipc://path, tcp://host:port, tcp://127.0.0.1:* for any port). */
  static async open(endpoint: string, opts: HubOptions = {}): Promise<Hub> {
    // linger 0: never hold Node's exit for queued messages. mandatory: a message to a peer that
    // is not connected fails instead of vanishing. A small HWM: credits bound the queue anyway.
    const curve = opts.curve ?? null
    const domain = curve ? `prcl-${process.pid}-${domainCounter++}` : null
    const router = new Router({
      linger: 0, mandatory: true, sendHighWaterMark: 64, receiveHighWaterMark: 0,
      // A peer that sends a larger frame is disconnected by libzmq before the frame is allocated.
      maxMessageSize: MAX_FRAME_BYTES,
      ...(curve ? { curveServer: true, curveSecretKey: curve.secretKey, curvePublicKey: curve.publicKey, zapDomain: domain! } : {}),
    })
    let release: (() => void) | null = null
    try {
      // The ZAP handler must be listening before the first peer can connect.
      if (curve) release = await authorize(domain!, curve.authorized, (peer) => hub.emit('refused', peer))
      await router.bind(endpoint)
    } catch (e) {
      release?.()
      router.close()
      throw e
    }
    const hub: Hub = new Hub(router, router.lastEndpoint ?? endpoint, release)
    router.events.on('disconnect', () => hub.emit('disconnect'))
    // A peer that speaks no CURVE (or another mechanism) to a keyed hub fails its handshake.
    router.events.on('handshake:error:protocol', (e) => hub.emit('refused', { address: e.address, reason: `handshake failed (${e.error.message})` }))
    router.events.on('handshake:error:other', (e) => hub.emit('refused', { address: e.address, reason: `handshake failed (${e.error.message})` }))
    void hub.receiveLoop()
    return hub
  }

  get isClosed(): boolean { return this.closed }

  /** Messages from `instance` (its main and control sockets) go to `handler`. */
  route(instance: string, handler: Handler): void { this.routes.set(instance, handler) }
  unroute(instance: string): void { this.routes.delete(instance) }
  /** Messages of instances without a route (hellos of new peers) go here; else 'stray' events. */
  setFallback(handler: Handler | null): void { this.fallback = handler }

  /** Send one multipart message; waits while the peer's queue is full, until `until` (epoch ms). */
  send(parts: Buffer[], until: number): Promise<void> {
    // When no send is in progress, send now rather than after a promise hop.
    const run = () => {
      this.sending++
      return this.sendPatiently(parts, until).finally(() => { this.sending-- })
    }
    const next = this.sending === 0 ? run() : this.sendChain.then(run, run)
    this.sendChain = next.catch(() => undefined)
    return next
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.router.close()
    this.release?.()
    this.release = null
    this.routes.clear()
    this.emit('closed')
  }

  /** A ROUTER with `mandatory` refuses at once (EAGAIN) when the peer's queue is full; wait for room. */
  private async sendPatiently(parts: Buffer[], until: number): Promise<void> {
    for (;;) {
      try {
        await this.router.send(parts)
        return
      } catch (e) {
        if ((e as { code?: string }).code !== 'EAGAIN' || Date.now() > until || this.closed) throw e
        await new Promise((r) => setTimeout(r, 1))
      }
    }
  }

  private async receiveLoop(): Promise<void> {
    // A plain receive() loop: one promise per message (the async iterator adds another).
    while (!this.closed) {
      let parts: Buffer[]
      try {
        parts = await this.router.receive()
      } catch (e) {
        if (!this.closed) this.emit('protocol-error', e)
        return
      }
      const identity = parts[0]!
      const id = identity.toString('latin1')
      const instance = id.endsWith('/ctl') ? id.slice(0, -4) : id
      const handler = this.routes.get(instance) ?? this.fallback
      try {
        if (handler) handler(identity, parts.slice(1))
        else this.emit('stray', identity, parts.slice(1))
      } catch (e) {
        this.emit('protocol-error', e)
      }
    }
  }
}
