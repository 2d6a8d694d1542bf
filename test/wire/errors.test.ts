// Errors as data, deadlines, cancellation and credits, against the shared real worker.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { packHeader } from '../../ts/wire/codec.ts'
import { DeadlineError, WorkerError } from '../../ts/wire/errors.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { attachShared } from '../setup/attach.ts'

let worker: Worker
beforeAll(async () => { worker = await attachShared({ maxInFlight: 2 }) })
afterAll(async () => { await worker?.close() })

describe('remote errors', () => {
  it('rethrows a Python exception as WorkerError with the remote traceback', async () => {
    const err = await worker.call('fail', { type: 'ZeroDivisionError', message: 'the bad divisor' }).catch((e) => e)
    expect(err).toBeInstanceOf(WorkerError)
    expect(err.type).toBe('ZeroDivisionError')
    expect(err.message).toContain('the bad divisor')
    expect(err.op).toBe('fail')
    const tb = err.remoteTraceback.join('')
    expect(tb).toMatch(/Traceback \(most recent call last\)/)
    expect(tb).toMatch(/bridge\.py", line \d+, in raise_it/)
    expect(err.stack).toContain('remote traceback')
  })

  it('names the JSON path of a bad argument', async () => {
    const err = await worker.call('sleep', { ms: 'soon' } as never).catch((e) => e)
    expect(err).toBeInstanceOf(WorkerError)
    expect(err.type).toBe('InvalidArgument')
    expect(err.path).toBe('body.ms')
    expect(err.message).toMatch(/body\.ms must be number/)
  })

  it('refuses an unknown op and lists the ones it serves', async () => {
    const err = await worker.call('train_everything', {}).catch((e) => e)
    expect(err.type).toBe('UnknownOp')
    expect(err.message).toMatch(/serves .*echo.*ping/)
  })

  it('refuses tensors sent to an op that takes none', async () => {
    const err = await worker.call('ping', {}, { tensors: { x: { dtype: 'uint8', shape: [1], data: new Uint8Array(1) } } }).catch((e) => e)
    expect(err.type).toBe('InvalidArgument')
    expect(err.path).toBe('tensors')
  })
})

describe('deadlines', () => {
  it('rejects a stalled request at its deadline, cancels it, and the worker recovers', async () => {
    const cancelled = async () => ((await worker.call('stats', {})).body.by_error as Record<string, number>).Cancelled ?? 0
    const before = await cancelled()
    const t0 = Date.now()
    const err = await worker.call('sleep', { ms: 20_000 }, { timeoutMs: 1500 }).catch((e) => e)
    expect(err).toBeInstanceOf(DeadlineError)
    expect(err.stalled).toBe(true)
    expect(err.message).toMatch(/stalled/)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400) // not before its deadline
    // The worker runs one request at a time, so this answers once the sleep has ended: stopped by
    // the cooperative cancel (its error counted as Cancelled), not run to its 20 s.
    expect(await cancelled()).toBe(before + 1)
    expect((await worker.call('ping', { payload: 3 })).body).toEqual({ pong: true, payload: 3 })
  })

  it('a request that arrives past its deadline is refused, not run', async () => {
    const answer = new Promise<{ error: { type: string; message: string } }>((resolve) => {
      worker.once('unmatched', resolve)
    })
    const h = worker.hello
    await worker.connection.sendRaw([packHeader({ v: 1, kind: 'req', id: 4242, op: 'sleep', instance: h.instance,
      body: { ms: 5000 }, tensors: [], deadline_ms: -250 })])
    const reply = await answer
    expect(reply.error.type).toBe('DeadlineExceeded')
    expect(reply.error.message).toMatch(/250 ms past its deadline/)
  })
})

describe('credits', () => {
  it('keeps at most K requests in flight and answers all of them in order', async () => {
    let peak = 0
    const answered: number[] = []
    const conn = worker.connection
    const calls = Array.from({ length: 6 }, (_, i) => worker.call('sleep', { ms: 40 }).then((r) => {
      peak = Math.max(peak, conn.inFlightCount)
      answered.push(i)
      return r.body
    }))
    peak = Math.max(peak, conn.inFlightCount)
    const sampler = setInterval(() => { peak = Math.max(peak, conn.inFlightCount) }, 5)
    const bodies = await Promise.all(calls)
    clearInterval(sampler)
    expect(answered).toEqual([0, 1, 2, 3, 4, 5])
    for (const b of bodies) expect(b).toEqual({ slept_ms: expect.any(Number) })
    expect(peak).toBe(2)
  })
})
