// Multipart message codec: frame 0 is a msgpack header, then one raw frame per tensor.
import { Packr, Unpackr } from 'msgpackr'
import { Compile } from 'typebox/compile'
import { itemsize } from './dtype.ts'
import { ErrorReply, Heartbeat, Hello, Reply, type TensorMeta } from './envelope.ts'
import { ProtocolError } from './errors.ts'
import { numel, tensorBytes, tensorFromBytes, type Tensor, type Tensors } from './tensor.ts'

// Records are a msgpackr-only extension that Python cannot read; int64 'auto' keeps safe
// integers as numbers so results stay JSON-serialisable.
// skipValues drops properties set to undefined, as JSON does; msgpackr would otherwise send them
// as an extension type that Python reads as a 1-tuple.
const packr = new Packr({ useRecords: false, skipValues: [undefined] } as ConstructorParameters<typeof Packr>[0])
// ('auto' is implemented by msgpackr 2.1 but missing from its type declarations.)
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'number' })

export function packHeader(header: object): Buffer {
  // The packer reuses its output buffer; zeromq sends frames over 128 B without copying, so
  // each header gets its own memory.
  return Buffer.from(packr.pack(header))
}

export function unpackHeader(frame: Uint8Array): unknown {
  return unpackr.unpack(frame)
}

/** Frames for a header plus named tensors. Tensor bytes are not copied: do not mutate them
 *  until the request settles. */
export function encode(header: Record<string, unknown>, tensors: Tensors = {}): Buffer[] {
  const { meta, frames } = encodeTensors(tensors)
  return [packHeader({ ...header, tensors: meta }), ...frames]
}

/** Header entries and frames (frame 1 onwards) for named tensors; sizes are checked here. */
export function encodeTensors(tensors: Tensors): { meta: TensorMeta[]; frames: Buffer[] } {
  const frames: Buffer[] = []
  const meta: TensorMeta[] = []
  for (const [name, t] of Object.entries(tensors)) {
    checkTensor(name, t)
    frames.push(tensorBytes(t))
    meta.push({ name, dtype: t.dtype, shape: t.shape, frame: frames.length, nbytes: frames[frames.length - 1]!.byteLength })
  }
  return { meta, frames }
}

function checkTensor(name: string, t: Tensor): void {
  const want = numel(t.shape) * itemsize(t.dtype)
  if (t.data.byteLength !== want) {
    throw new RangeError(`tensor '${name}': shape [${t.shape}] of ${t.dtype} needs ${want} bytes, data has ${t.data.byteLength}`)
  }
}

/** Tensors of a decoded header; sizes are checked before any buffer is wrapped. */
export function decodeTensors(meta: TensorMeta[], frames: Uint8Array[]): Tensors {
  const out: Tensors = {}
  const used = new Set<number>()
  for (const m of meta) {
    const frame = frames[m.frame]
    if (frame === undefined) throw new ProtocolError(`tensor '${m.name}' names frame ${m.frame} but the message has ${frames.length}`)
    if (used.has(m.frame)) throw new ProtocolError(`frame ${m.frame} is named by two tensors`)
    used.add(m.frame)
    const want = numel(m.shape) * itemsize(m.dtype)
    if (m.nbytes !== want || frame.byteLength !== want) {
      throw new ProtocolError(`tensor '${m.name}': shape [${m.shape}] of ${m.dtype} needs ${want} bytes; header says ${m.nbytes}, frame has ${frame.byteLength}`)
    }
    if (m.name in out) throw new ProtocolError(`tensor name '${m.name}' appears twice`)
    out[m.name] = tensorFromBytes(frame, m.dtype, m.shape)
  }
  if (used.size !== frames.length - 1) {
    throw new ProtocolError(`message has ${frames.length - 1} tensor frames but the header names ${used.size}`)
  }
  return out
}

const check = {
  rep: Compile(Reply),
  err: Compile(ErrorReply),
  hb: Compile(Heartbeat),
  hello: Compile(Hello),
}

export type Incoming =
  | { kind: 'rep'; header: Reply; tensors: Tensors }
  | { kind: 'err'; header: ErrorReply }
  | { kind: 'hb'; header: Heartbeat }
  | { kind: 'hello'; header: Hello }
  | { kind: 'unknown'; header: unknown }

/** Decode and validate a worker message (frames without the routing identity). */
export function decode(frames: Uint8Array[]): Incoming {
  if (frames.length === 0) throw new ProtocolError('empty message')
  let header: unknown
  try {
    header = unpackHeader(frames[0]!)
  } catch (e) {
    throw new ProtocolError(`header is not msgpack: ${(e as Error).message}`)
  }
  const kind = (header as { kind?: unknown } | null)?.kind
  if (kind !== 'rep' && kind !== 'err' && kind !== 'hb' && kind !== 'hello') return { kind: 'unknown', header }
  const validator = check[kind]
  if (!validator.Check(header)) {
    const first = [...validator.Errors(header)][0]
    throw new ProtocolError(`bad ${kind} header at ${first?.instancePath || '/'}: ${first?.message ?? 'invalid'}`)
  }
  if (kind === 'rep') {
    const h = header as Reply
    return { kind, header: h, tensors: decodeTensors(h.tensors, frames) }
  }
  if (frames.length > 1) throw new ProtocolError(`${kind} message carries ${frames.length - 1} unexpected frames`)
  return { kind, header } as Incoming
}
