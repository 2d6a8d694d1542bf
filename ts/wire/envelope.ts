// Protocol v1 envelope: frame 0 of every message is one of these msgpack maps; tensor bytes
// follow as their own frames. Unknown header fields are ignored on both sides (no
// additionalProperties: false here), so a newer peer can add fields without breaking us.
import Type, { type Static } from 'typebox'
import { DTYPES } from './dtype.ts'

export const PROTOCOL_VERSION = 1
export const MAX_TENSORS = 1024
export const MAX_DIMS = 16
export const UINT32_MAX = 0xffffffff
/** Heartbeat intervals a worker may announce (it refuses to start with another; the driver
 *  ignores a hello outside them rather than adopt a watchdog that would kill the worker). */
export const HEARTBEAT_MS_MIN = 50
export const HEARTBEAT_MS_MAX = 60_000
/** The largest request header the worker reads (py/prcl_worker/server.py MAX_HEADER_BYTES). */
export const MAX_HEADER_BYTES = 1 << 20
/** The largest frame either side's sockets accept (ZMQ_MAXMSGSIZE; server.py MAX_FRAME_BYTES). */
export const MAX_FRAME_BYTES = 2 * 2 ** 30

export const TensorMeta = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 128 }),
  dtype: Type.Enum([...DTYPES]),
  shape: Type.Array(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), { maxItems: MAX_DIMS }),
  // Index of the tensor's frame in the message; the header is frame 0.
  frame: Type.Integer({ minimum: 1, maximum: MAX_TENSORS }),
  nbytes: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
})
export type TensorMeta = Static<typeof TensorMeta>

const V = Type.Literal(PROTOCOL_VERSION)
const Id = Type.Integer({ minimum: 0, maximum: UINT32_MAX })
const OpName = Type.String({ pattern: '^[a-z][a-z0-9_]{0,63}$' })
const Instance = Type.String({ minLength: 1, maxLength: 64 })
const TensorList = Type.Array(TensorMeta, { maxItems: MAX_TENSORS })

/** driver → worker: run an op. */
export const Request = Type.Object({
  v: V,
  kind: Type.Literal('req'),
  id: Id,
  op: OpName,
  instance: Instance,
  // Milliseconds left when the request was sent; <= 0 means it is already late.
  deadline_ms: Type.Optional(Type.Number()),
  body: Type.Object({}),
  tensors: TensorList,
}, { $id: 'prcl/request' })
export type Request = Static<typeof Request>

/** driver → worker control socket: stop working on a request. */
export const Cancel = Type.Object({
  v: V,
  kind: Type.Literal('cancel'),
  id: Id,
  instance: Instance,
}, { $id: 'prcl/cancel' })
export type Cancel = Static<typeof Cancel>

/** driver → worker control socket: exit the process now (a rank the driver did not spawn, whose
 *  main thread may be waiting in a collective for a rank that died). */
export const Abort = Type.Object({
  v: V,
  kind: Type.Literal('abort'),
  instance: Instance,
  reason: Type.String({ maxLength: 1000 }),
}, { $id: 'prcl/abort' })
export type Abort = Static<typeof Abort>

/** worker → driver: an op's result. */
export const Reply = Type.Object({
  v: V,
  kind: Type.Literal('rep'),
  id: Id,
  op: OpName,
  instance: Instance,
  body: Type.Object({}),
  tensors: TensorList,
  // Seconds the request waited in the worker and ran.
  timing: Type.Optional(Type.Object({ queued_ms: Type.Number(), run_ms: Type.Number() })),
}, { $id: 'prcl/reply' })
export type Reply = Static<typeof Reply>

export const RemoteError = Type.Object({
  type: Type.String(),
  message: Type.String(),
  traceback: Type.Array(Type.String()),
  retryable: Type.Boolean(),
  // JSON path of the offending value, for validation errors.
  path: Type.Optional(Type.String()),
})
export type RemoteError = Static<typeof RemoteError>

/** worker → driver: a request failed, or a message could not be read (id null). */
export const ErrorReply = Type.Object({
  v: V,
  kind: Type.Literal('err'),
  id: Type.Union([Id, Type.Null()]),
  op: Type.Optional(Type.String()),
  instance: Instance,
  error: RemoteError,
}, { $id: 'prcl/error' })
export type ErrorReply = Static<typeof ErrorReply>

/** worker → driver, every interval_ms from the control thread. */
export const Heartbeat = Type.Object({
  v: V,
  kind: Type.Literal('hb'),
  instance: Instance,
  seq: Type.Integer({ minimum: 0 }),
  busy_op: Type.Union([Type.String(), Type.Null()]),
  busy_id: Type.Union([Id, Type.Null()]),
  // Epoch milliseconds on the worker's clock, and the same as a duration (clock-skew free).
  busy_since: Type.Union([Type.Number(), Type.Null()]),
  busy_for_ms: Type.Union([Type.Number(), Type.Null()]),
  served: Type.Integer({ minimum: 0 }),
}, { $id: 'prcl/heartbeat' })
export type Heartbeat = Static<typeof Heartbeat>

export const OpDescriptor = Type.Object({
  args: Type.Unknown(),
  result: Type.Unknown(),
  tensors: Type.Enum(['none', 'any']),
  doc: Type.String(),
})

/** worker → driver, on every new connection and as the result of the `hello` op. */
export const Hello = Type.Object({
  v: V,
  kind: Type.Literal('hello'),
  protocol: Type.Integer(),
  instance: Instance,
  worker_version: Type.String(),
  pid: Type.Integer(),
  host: Type.String(),
  python: Type.String(),
  executable: Type.String(),
  torch: Type.String(),
  cuda: Type.Union([Type.String(), Type.Null()]),
  device: Type.String(),
  device_name: Type.String(),
  numpy: Type.String(),
  pyzmq: Type.String(),
  libzmq: Type.String(),
  heartbeat_ms: Type.Integer({ minimum: HEARTBEAT_MS_MIN, maximum: HEARTBEAT_MS_MAX }),
  schema_hash: Type.String(),
  ops: Type.Record(Type.String(), OpDescriptor),
  // Names a loss spec may reference: model.<output>, batch.<tensor>, and the loss ops.
  model_outputs: Type.Array(Type.String()),
  batch_tensors: Type.Array(Type.String()),
  loss_ops: Type.Array(Type.String()),
  // The worker's place in a torch.distributed group, from the torchrun environment (RANK,
  // WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); null when it runs alone.
  dist: Type.Union([Type.Object({
    rank: Type.Integer({ minimum: 0 }),
    world_size: Type.Integer({ minimum: 1 }),
    local_rank: Type.Integer({ minimum: 0 }),
    backend: Type.String(),
    master: Type.String(),
  }, { additionalProperties: false }), Type.Null()]),
}, { $id: 'prcl/hello' })
export type Hello = Static<typeof Hello>

export const ENVELOPE_SCHEMAS = { request: Request, cancel: Cancel, abort: Abort, reply: Reply, error: ErrorReply, heartbeat: Heartbeat, hello: Hello }
