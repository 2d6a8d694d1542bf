// 1,200 malformed messages, then a valid ping: each one is answered with an error (or, for
// an unknown message kind, dropped with a log line), and the worker keeps serving.
import { Packr } from 'msgpackr'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { packHeader } from '../../ts/wire/codec.ts'
import type { ErrorReply } from '../../ts/wire/envelope.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { attachShared } from '../setup/attach.ts'

let worker: Worker
beforeAll(async () => { worker = await attachShared() })
afterAll(async () => { await worker?.close() })

function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Expect = { kind: 'err'; id: number; type?: string } | { kind: 'err-null' } | { kind: 'dropped' }
interface Case { category: string; frames: Buffer[]; expect: Expect }

const rawPackr = new Packr({ useRecords: false })

function cases(instance: string, seed: number): Case[] {
  const rnd = mulberry32(seed)
  const int = (n: number) => Math.floor(rnd() * n)
  const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)))
  let nextId = 900_000
  const req = (over: Record<string, unknown> = {}) => ({
    v: 1, kind: 'req', id: nextId++, op: 'echo', instance, body: {}, tensors: [] as unknown[], ...over,
  })
  const t = (over: Record<string, unknown> = {}) => ({ name: 'x', dtype: 'float32', shape: [2, 2], frame: 1, nbytes: 16, ...over })
  const gens: Array<() => Case> = [
    // Bytes that are not msgpack at all, or are msgpack of the wrong shape.
    () => ({ category: 'random bytes', frames: [Buffer.concat([Buffer.from([0xc1]), randomBytes(int(64))])], expect: { kind: 'err-null' } }),
    () => ({ category: 'truncated msgpack', frames: [packHeader(req()).subarray(0, 5)], expect: { kind: 'err-null' } }),
    () => ({ category: 'JSON text', frames: [Buffer.from('{"v":1,"kind":"req","id":1}xx')], expect: { kind: 'err-null' } }),
    () => ({ category: 'not a map', frames: [rawPackr.pack([1, 'req', int(1000)])], expect: { kind: 'err-null' } }),
    () => ({ category: 'empty header', frames: [Buffer.alloc(0)], expect: { kind: 'err-null' } }),
    () => ({ category: 'bad id type', frames: [packHeader(req({ id: 'seven' }))], expect: { kind: 'err-null' } }),
    () => ({ category: 'negative id', frames: [packHeader(req({ id: -5 }))], expect: { kind: 'err-null' } }),
    // Readable headers with something wrong: answered with an error carrying the id.
    ...(['v', 'op', 'body', 'tensors', 'instance'] as const).map((field) => () => {
      const h = req()
      const bad: Record<string, unknown> = { v: 'one', op: 42, body: [1, 2], tensors: { x: 1 }, instance: 7 }
      return { category: `wrong type: ${field}`, frames: [packHeader({ ...h, [field]: bad[field] })], expect: { kind: 'err', id: h.id, type: 'BadMessage' } as Expect }
    }),
    () => { const h = req(); delete (h as Partial<typeof h>).body; return { category: 'missing body', frames: [packHeader(h)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ v: 2 }); return { category: 'protocol v2', frames: [packHeader(h)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ op: ['train', 'rm_rf', 'os_system', 'eval_x'][int(4)] }); return { category: 'unknown op', frames: [packHeader(h)], expect: { kind: 'err', id: h.id, type: 'UnknownOp' } } },
    () => { const h = req({ op: '__import__' }); return { category: 'op name pattern', frames: [packHeader(h)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ instance: 'someone-else' }); return { category: 'stale instance', frames: [packHeader(h)], expect: { kind: 'err', id: h.id, type: 'StaleInstance' } } },
    () => { const h = req({ op: 'ping', body: { payload: 1, extra: true } }); return { category: 'extra body field', frames: [packHeader(h)], expect: { kind: 'err', id: h.id, type: 'InvalidArgument' } } },
    () => { const h = req({ op: 'sleep', body: { ms: -1 - int(100) } }); return { category: 'out-of-range arg', frames: [packHeader(h)], expect: { kind: 'err', id: h.id, type: 'InvalidArgument' } } },
    () => { const h = req({ op: 'ping', deadline_ms: -1 - int(10_000) }); return { category: 'deadline in the past', frames: [packHeader(h)], expect: { kind: 'err', id: h.id, type: 'DeadlineExceeded' } } },
    // Tensor metadata that does not fit the frames.
    () => { const h = req({ tensors: [t({ dtype: 'complex64' })] }); return { category: 'bad dtype', frames: [packHeader(h), Buffer.alloc(16)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t({ nbytes: 12 })] }); return { category: 'nbytes mismatch', frames: [packHeader(h), Buffer.alloc(12)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t({ shape: [3, 2] })] }); return { category: 'shape mismatch', frames: [packHeader(h), Buffer.alloc(16)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t()] }); return { category: 'frame length mismatch', frames: [packHeader(h), Buffer.alloc(4 * int(4) + (int(2) ? 20 : 0))], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t({ dtype: 'float64' })] }); return { category: 'dtype mismatch', frames: [packHeader(h), Buffer.alloc(16)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t()] }); return { category: 'missing frame', frames: [packHeader(h)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t()] }); return { category: 'extra frames', frames: [packHeader(h), Buffer.alloc(16), randomBytes(1 + int(40))], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req(); return { category: 'frames without tensors', frames: [packHeader(h), Buffer.alloc(4)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t(), t({ name: 'y' })] }); return { category: 'two tensors one frame', frames: [packHeader(h), Buffer.alloc(16)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t(), t({ frame: 2 })] }); return { category: 'duplicate name', frames: [packHeader(h), Buffer.alloc(16), Buffer.alloc(16)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t({ shape: [2 ** 40, 2 ** 40], nbytes: 16 })] }); return { category: 'absurd shape', frames: [packHeader(h), Buffer.alloc(16)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t({ shape: [-2, -2] })] }); return { category: 'negative shape', frames: [packHeader(h), Buffer.alloc(16)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t({ shape: Array(17).fill(1), nbytes: 4 })] }); return { category: 'too many dims', frames: [packHeader(h), Buffer.alloc(4)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t({ shape: [2.5, 2] })] }); return { category: 'fractional dim', frames: [packHeader(h), Buffer.alloc(16)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    () => { const h = req({ tensors: [t({ frame: 0 })] }); return { category: 'frame 0', frames: [packHeader(h), Buffer.alloc(16)], expect: { kind: 'err', id: h.id, type: 'BadMessage' } } },
    // Not a request at all: ignored, with a log line.
    () => ({ category: 'unknown kind', frames: [packHeader({ v: 1, kind: ['gossip', 'rep', 'hb', 'hello'][int(4)], id: 5 })], expect: { kind: 'dropped' } }),
  ]
  const out: Case[] = []
  for (let i = 0; i < 1200; i++) out.push(gens[i < gens.length ? i : int(gens.length)]!())
  // One header far over the size limit: answered with its id, read from the header's first bytes.
  const huge = req({ body: { blob: 'x'.repeat(1_100_000) } })
  out.push({ category: 'huge header', frames: [packHeader(huge)], expect: { kind: 'err', id: huge.id, type: 'BadMessage' } })
  return out
}

it('answers or logs every malformed message and still serves', async () => {
  const before = (await worker.call('stats', {})).body
  const all = cases(worker.hello.instance, 20261126)
  const got = new Map<number | null, ErrorReply[]>()
  const others: unknown[] = []
  const onUnmatched = (h: ErrorReply) => {
    if (h.kind !== 'err') { others.push(h); return }
    const list = got.get(h.id) ?? []
    list.push(h)
    got.set(h.id, list)
  }
  worker.on('unmatched', onUnmatched)
  for (const c of all) await worker.connection.sendRaw(c.frames)
  // The worker serves messages in order: once the ping is answered, every answer above is in.
  const pong = await worker.call('ping', { payload: 'still here' })
  expect(pong.body).toEqual({ pong: true, payload: 'still here' })
  worker.off('unmatched', onUnmatched)
  expect(others).toEqual([])

  const byCategory = new Map<string, number>()
  let nullExpected = 0
  let dropped = 0
  for (const c of all) {
    byCategory.set(c.category, (byCategory.get(c.category) ?? 0) + 1)
    if (c.expect.kind === 'err') {
      const replies = got.get(c.expect.id) ?? []
      expect(replies.length, `${c.category}: one answer for request ${c.expect.id}`).toBe(1)
      expect(replies[0]!.error.type, c.category).toBe(c.expect.type)
      expect(replies[0]!.error.message.length, c.category).toBeGreaterThan(10)
    } else if (c.expect.kind === 'err-null') nullExpected++
    else dropped++
  }
  expect(got.get(null)?.length ?? 0).toBe(nullExpected)
  expect(byCategory.size).toBeGreaterThanOrEqual(35)

  const after = (await worker.call('stats', {})).body
  expect(after.received - before.received).toBe(all.length + 2) // + ping + this stats call
  expect(after.errors - before.errors + after.dropped - before.dropped).toBe(all.length)
  expect(after.dropped - before.dropped).toBe(dropped)
}, 120_000)
