import { ARRAY_CTOR, arrayTag, dtypeOf, itemsize, type ArrayForDType, type DType, type TypedArray } from './dtype.ts'

/** A host tensor: a typed array plus dtype and shape, row-major. */
export interface Tensor<D extends DType = DType> {
  dtype: D
  shape: number[]
  data: ArrayForDType[D]
}

export type Tensors = Record<string, Tensor>

export function numel(shape: readonly number[]): number {
  let n = 1
  for (const d of shape) n *= d
  return n
}

/** Wrap a typed array as a tensor; the shape defaults to 1-d and must match the element count. */
export function tensor<D extends DType>(data: ArrayForDType[D], shape?: number[], dtype?: D): Tensor<D> {
  const dt = (dtype ?? dtypeOf(data as TypedArray)) as D
  if (arrayTag(data) !== ARRAY_CTOR[dt].name) {
    throw new TypeError(`dtype ${dt} needs a ${ARRAY_CTOR[dt].name}, got ${arrayTag(data)}`)
  }
  const s = shape ?? [data.length]
  for (const d of s) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`bad dimension ${d} in shape [${s}]`)
  }
  if (numel(s) !== data.length) {
    throw new RangeError(`shape [${s}] holds ${numel(s)} elements but the ${dt} array has ${data.length}`)
  }
  return { dtype: dt, shape: s, data }
}

export function nbytes(t: Tensor): number {
  return numel(t.shape) * itemsize(t.dtype)
}

/** The raw little-endian bytes of a tensor, without a copy. */
export function tensorBytes(t: Tensor): Buffer {
  const d = t.data as TypedArray
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength)
}

/** View bytes as a tensor; copies only when the bytes are misaligned for the dtype. */
export function tensorFromBytes(buf: Uint8Array, dtype: DType, shape: number[]): Tensor {
  const size = itemsize(dtype)
  const Ctor = ARRAY_CTOR[dtype]
  let bytes = buf
  if (bytes.byteOffset % size !== 0) {
    // Small frames are copied into pooled memory at arbitrary offsets: realign them.
    const aligned = new Uint8Array(bytes.byteLength)
    aligned.set(bytes)
    bytes = aligned
  }
  const data = new Ctor(bytes.buffer, bytes.byteOffset, bytes.byteLength / size)
  return { dtype, shape, data } as Tensor
}
