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

/** The dtype a typed array stands for when none is given. */
export type DTypeOf<A> = A extends Float32Array ? 'float32' : A extends Float64Array ? 'float64'
  : A extends Int8Array ? 'int8' : A extends Int16Array ? 'int16' : A extends Int32Array ? 'int32'
  : A extends BigInt64Array ? 'int64' : A extends Uint8Array ? 'uint8' : never

/** Wrap a typed array as a tensor; the shape defaults to 1-d and must match the element count.
 *  Uint16Array needs a dtype (float16 or bfloat16), and a Uint8Array is uint8 unless told 'bool'. */
export function tensor<A extends TypedArray>(data: A, shape?: number[]): Tensor<DTypeOf<A>>
export function tensor<D extends DType>(data: ArrayForDType[D], shape: number[] | undefined, dtype: D): Tensor<D>
export function tensor(data: TypedArray, shape?: number[], dtype?: DType): Tensor {
  const dt = dtype ?? dtypeOf(data)
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
  return { dtype: dt, shape: s, data } as Tensor
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

/** Encoded file bytes (a JPEG, a PNG) as a uint8 tensor, without a copy. */
export function bytesTensor(b: Uint8Array): Tensor<'uint8'> {
  return tensor(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), undefined, 'uint8')
}
