// Ops that exercise and inspect the bridge itself; every worker serves them.
import Type from 'typebox'
import { op } from './spec.ts'

const Closed = { additionalProperties: false } as const

export const bridgeOps = {
  hello: op({
    doc: 'The hello message again: versions, device, ops.',
    args: Type.Object({}, Closed),
    result: Type.Object({}),
    tensors: 'none',
  }),
  ping: op({
    doc: 'Round trip with a small payload, returned unchanged.',
    args: Type.Object({ payload: Type.Optional(Type.Unknown()) }, Closed),
    result: Type.Object({ pong: Type.Literal(true), payload: Type.Optional(Type.Unknown()) }, Closed),
    tensors: 'none',
  }),
  echo: op({
    doc: 'Returns the request tensors unchanged, bit for bit.',
    args: Type.Object({}, Closed),
    result: Type.Object({ names: Type.Array(Type.String()) }, Closed),
    tensors: 'any',
  }),
  upload: op({
    doc: 'Receives tensors as torch tensors and answers with their sizes only.',
    args: Type.Object({}, Closed),
    result: Type.Object({ count: Type.Integer({ minimum: 0 }), nbytes: Type.Integer({ minimum: 0 }) }, Closed),
    tensors: 'any',
  }),
  sleep: op({
    doc: 'Sleeps (cooperatively cancellable); for deadline and stall handling.',
    args: Type.Object({ ms: Type.Number({ minimum: 0, maximum: 3_600_000 }) }, Closed),
    result: Type.Object({ slept_ms: Type.Number() }, Closed),
    tensors: 'none',
  }),
  fail: op({
    doc: 'Raises the named Python exception; for error propagation.',
    args: Type.Object({
      type: Type.Enum(['ValueError', 'RuntimeError', 'KeyError', 'MemoryError', 'ZeroDivisionError']),
      message: Type.String({ maxLength: 10_000 }),
    }, Closed),
    result: Type.Object({}, Closed),
    tensors: 'none',
  }),
  stats: op({
    doc: 'Counters of what the worker received and answered, memory and device.',
    args: Type.Object({}, Closed),
    result: Type.Object({
      received: Type.Integer({ minimum: 0 }),
      replied: Type.Integer({ minimum: 0 }),
      errors: Type.Integer({ minimum: 0 }),
      dropped: Type.Integer({ minimum: 0 }),
      // Requests whose host-side preparation (decoding) ran while an earlier request computed.
      prepared_ahead: Type.Integer({ minimum: 0 }),
      by_error: Type.Record(Type.String(), Type.Integer({ minimum: 0 })),
      uptime_s: Type.Number(),
      rss_mb: Type.Number(),
      device: Type.String(),
      cuda_allocated_mb: Type.Union([Type.Number(), Type.Null()]),
      // Collectives this rank issued since it started, by kind (ddp_gradients, sync_bn_forward,
      // prcl_prototypes, …; py/prcl_worker/distributed.py): calls, and bytes it handed in
      // (numel × element size). Null when the worker is not one rank of a torch.distributed group.
      collectives: Type.Union([
        Type.Record(Type.String(), Type.Object({ calls: Type.Integer({ minimum: 0 }), bytes: Type.Integer({ minimum: 0 }) }, Closed)),
        Type.Null(),
      ]),
    }, Closed),
    tensors: 'none',
  }),
  shutdown: op({
    doc: 'Replies, then exits cleanly.',
    args: Type.Object({}, Closed),
    result: Type.Object({ bye: Type.Literal(true) }, Closed),
    tensors: 'none',
  }),
}
