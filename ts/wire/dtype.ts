// The dtype vocabulary of the wire (protocol v1). Tensors travel little-endian and C-contiguous;
// float16 and bfloat16 travel as raw 16-bit words because Node 20 has no Float16Array.

export const DTYPES = [
  'float32', 'float64', 'float16', 'bfloat16',
  'int8', 'int16', 'int32', 'int64', 'uint8', 'bool',
] as const
export type DType = (typeof DTYPES)[number]

export interface ArrayForDType {
  float32: Float32Array
  float64: Float64Array
  float16: Uint16Array
  bfloat16: Uint16Array
  int8: Int8Array
  int16: Int16Array
  int32: Int32Array
  int64: BigInt64Array
  uint8: Uint8Array
  bool: Uint8Array
}
export type TypedArray = ArrayForDType[DType]

type Ctor<A> = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): A; new (length: number): A; BYTES_PER_ELEMENT: number }

export const ARRAY_CTOR: { [D in DType]: Ctor<ArrayForDType[D]> } = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  bool: Uint8Array,
}

export function itemsize(dtype: DType): number {
  return ARRAY_CTOR[dtype].BYTES_PER_ELEMENT
}

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && (DTYPES as readonly string[]).includes(x)
}

/** The dtype a typed array implies, where it is unambiguous (Uint16Array and Uint8Array are not). */
export function dtypeOf(data: TypedArray): DType {
  if (data instanceof Float32Array) return 'float32'
  if (data instanceof Float64Array) return 'float64'
  if (data instanceof Int8Array) return 'int8'
  if (data instanceof Int16Array) return 'int16'
  if (data instanceof Int32Array) return 'int32'
  if (data instanceof BigInt64Array) return 'int64'
  if (data instanceof Uint8Array) return 'uint8'
  throw new TypeError(`${data.constructor.name} does not name a dtype on its own: pass dtype ('float16', 'bfloat16')`)
}
