// Who the driver listens to (issue 10 item 8): a hello only from the expected instance (or, when
// none is expected, the first one), heartbeat intervals in range, replies only from the peer that
// was asked, and a header too large for the worker refused before it is sent.
import { afterEach, describe, expect, it } from 'vitest'
import { Dealer } from 'zeromq'
import { packHeader, unpackHeader } from '../../ts/wire/codec.ts'
import { Connection } from '../../ts/wire/connection.ts'
import { MAX_HEADER_BYTES, PROTOCOL_VERSION, type Hello } from '../../ts/wire/envelope.ts'
import { ProtocolError } from '../../ts/wire/errors.ts'

const open: Array<{ close(): void }> = []
afterEach(() => { for (const c of open.splice(0)) c.close() })

function hello(instance: string, heartbeat_ms = 200): Hello {
  return {
    v: PROTOCOL_VERSION, kind: 'hello', protocol: PROTOCOL_VERSION, instance, worker_version: 'test', pid: 1, host: 'h',
    python: '3', executable: 'py', torch: '2', cuda: null, device: 'cpu', device_name: 'cpu', numpy: '1', pyzmq: '1',
    libzmq: '4', heartbeat_ms, schema_hash: 'x', ops: {}, model_outputs: [], batch_tensors: [], loss_ops: [], dist: null,
  }
}

async function conn(): Promise<Connection> {
  const c = await Connection.open('tcp://127.0.0.1:*', { defaultTimeoutMs: 5000 })
  open.push(c)
  return c
}

async function peer(c: Connection, routingId: string): Promise<Dealer> {
  const d = new Dealer({ routingId, linger: 0 })
  d.connect(c.endpoint)
  open.push(d)
  return d
}

/** `d` says hello as `instance`; resolves with the hello `c` adopts. */
async function sayHello(c: Connection, d: Dealer, instance: string): Promise<Hello> {
  const adopted = next<Hello>(c, 'hello')
  await d.send(packHeader(hello(instance)))
  return adopted
}

function next<T>(c: Connection, event: string, ms = 3000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms)
    c.once(event, (v: T) => { clearTimeout(t); resolve(v) })
  })
}

describe('hellos', () => {
  it('only the expected instance is adopted; a forged hello is refused and reported', async () => {
    const c = await conn()
    c.expectInstance('real')
    const forger = await peer(c, 'forger')
    const refused = next<{ instance: string; reason: string }>(c, 'hello-refused')
    await forger.send(packHeader(hello('forger')))
    expect(await refused).toEqual({ instance: 'forger', reason: 'a hello from instance forger, but this driver started real' })
    expect(c.hello).toBeNull()
    const real = await peer(c, 'real')
    expect((await sayHello(c, real, 'real')).instance).toBe('real')
    // a forger that copies the instance but not the socket identity
    const refused2 = next<{ reason: string }>(c, 'hello-refused')
    await forger.send(packHeader(hello('real')))
    expect((await refused2).reason).toMatch(/came from another socket \(forger\)/)
    expect(c.refusedHellos).toBe(2)
  })

  it('an attached connection adopts the first hello and refuses another instance while it is connected', async () => {
    const c = await conn()
    const a = await peer(c, 'aaa')
    await sayHello(c, a, 'aaa')
    const b = await peer(c, 'bbb')
    const refused = next<{ reason: string }>(c, 'hello-refused')
    await b.send(packHeader(hello('bbb')))
    expect((await refused).reason).toBe('a hello from instance bbb while worker aaa is connected')
    expect(c.hello!.instance).toBe('aaa')
    // the same worker again (a reconnect) is fine
    expect((await sayHello(c, a, 'aaa')).instance).toBe('aaa')
  })

  it('a hello with a heartbeat interval out of range is not adopted', async () => {
    for (const hb of [1, 49, 60_001]) {
      const c = await conn()
      const p = await peer(c, 'w')
      const err = next<Error>(c, 'protocol-error')
      await p.send(packHeader(hello('w', hb)))
      expect((await err).message).toMatch(/bad hello header at \/heartbeat_ms/)
      expect(c.hello).toBeNull()
    }
  })
})

describe('replies', () => {
  it('a reply for a pending id from another identity is ignored and counted', async () => {
    const c = await conn()
    const w = await peer(c, 'w')
    await sayHello(c, w, 'w')
    const other = await peer(c, 'other')
    const call = c.call('ping', { payload: 1 })
    const [head] = await w.receive()
    const { id } = unpackHeader(head!) as { id: number }
    const reply = (instance: string) => packHeader({ v: 1, kind: 'rep', id, op: 'ping', instance, body: { pong: true, payload: 'forged' }, tensors: [] })
    const foreign = next<{ id: number; identity: string }>(c, 'foreign-reply')
    await other.send(reply('w'))
    expect(await foreign).toMatchObject({ id, identity: 'other' })
    // the worker's own socket naming another instance is not the connected worker either
    const foreign2 = next<{ id: number }>(c, 'foreign-reply')
    await w.send(reply('someone'))
    await foreign2
    expect(c.foreignReplies).toBe(2)
    await w.send(packHeader({ v: 1, kind: 'rep', id, op: 'ping', instance: 'w', body: { pong: true, payload: 1 }, tensors: [] }))
    expect((await call).body).toEqual({ pong: true, payload: 1 })
  })
})

describe('header size', () => {
  it('a header over the worker\'s limit is refused at once, naming the biggest body field', async () => {
    const c = await conn()
    const w = await peer(c, 'w')
    await sayHello(c, w, 'w')
    const started = Date.now()
    const err = await c.call('ping', { payload: 'x'.repeat(MAX_HEADER_BYTES), small: 1 }, { timeoutMs: 30_000 }).catch((e) => e)
    expect(err).toBeInstanceOf(ProtocolError)
    expect(err.message).toMatch(/call 'ping': its header is \d+ bytes, over the worker's limit of 1048576 \(the biggest body field is 'payload', \d+ bytes\)/)
    expect(Date.now() - started).toBeLessThan(1000)
    expect(c.inFlightCount).toBe(0)
  })
})
