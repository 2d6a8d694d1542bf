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

const BY_TAG: Record<string, DType> = {
  Float32Array: 'float32', Float64Array: 'float64', Int8Array: 'int8', Int16Array: 'int16',
  Int32Array: 'int32', BigInt64Array: 'int64', Uint8Array: 'uint8',
}

/** The array type's name, also for arrays from another realm (a REPL or vm context). */
export function arrayTag(data: unknown): string {
  return Object.prototype.toString.call(data).slice(8, -1)
}

/** The dtype a typed array implies, where it is unambiguous (Uint16Array and Uint8Array are not). */
export function dtypeOf(data: TypedArray): DType {
  const dt = BY_TAG[arrayTag(data)]
  if (dt) return dt
  throw new TypeError(`${arrayTag(data)} does not name a dtype on its own: pass dtype ('float16', 'bfloat16', 'bool', …)`)
}
