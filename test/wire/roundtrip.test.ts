// Bit-exact round trips of every dtype through a real worker (TS → Python/torch → TS).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tensor, type Tensor } from '../../ts/wire/tensor.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { attachShared } from '../setup/attach.ts'

let worker: Worker
beforeAll(async () => { worker = await attachShared() })
afterAll(async () => { await worker?.close() })

function bytes(t: Tensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)
}

async function echo(tensors: Record<string, Tensor>) {
  const r = await worker.call('echo', {}, { tensors })
  expect(r.body.names).toEqual(Object.keys(tensors))
  for (const [name, t] of Object.entries(tensors)) {
    const back = r.tensors[name]!
    expect(back.dtype, name).toBe(t.dtype)
    expect(back.shape, name).toEqual(t.shape)
    expect(bytes(back).equals(bytes(t)), `${name} bytes`).toBe(true)
  }
  return r
}

const f32Bits = [
  0x7fc00000, 0x7fc00001, 0x7f800001, 0xffc12345, // quiet NaN, NaN with payload, signalling NaN, negative NaN
  0x80000000, 0x7f800000, 0xff800000, // -0, +Inf, -Inf
  0x00000001, 0x007fffff, 0x80000001, // smallest denormal, largest denormal, negative denormal
  0x7f7fffff, 0x00800000, 0x3f800000, 0x00000000, // FLT_MAX, smallest normal, 1, +0
]

function every16(): Uint16Array {
  return Uint16Array.from({ length: 65536 }, (_, i) => i)
}

describe('every dtype round-trips bit for bit', () => {
  it('float32: NaN payloads, -0, ±Inf, denormals and a wide random range', async () => {
    const n = 256 * 256
    const bits = new Uint32Array(n)
    bits.set(f32Bits)
    const view = new Float32Array(bits.buffer)
    for (let i = f32Bits.length; i < n; i++) view[i] = (Math.random() - 0.5) * 10 ** (Math.floor(Math.random() * 70) - 35)
    await echo({ x: tensor(view, [256, 256]) })
  })

  it('float64: NaN payloads, -0, ±Inf, denormals', async () => {
    const bits = new BigUint64Array([
      0x7ff8000000000000n, 0x7ff8000000000001n, 0x7ff0000000000001n, 0xfff8dead0000beefn,
      0x8000000000000000n, 0x7ff0000000000000n, 0xfff0000000000000n, 1n, 0x000fffffffffffffn, 0x7fefffffffffffffn,
    ])
    await echo({ x: tensor(new Float64Array(bits.buffer), [2, 5]) })
  })

  it('float16 and bfloat16: all 65,536 bit patterns', async () => {
    await echo({ h: tensor(every16(), [256, 256], 'float16'), b: tensor(every16(), [65536], 'bfloat16') })
  })

  it('integers: full ranges of 8 and 16 bits, extremes of 32 and 64', async () => {
    await echo({
      i8: tensor(Int8Array.from({ length: 256 }, (_, i) => i - 128), [16, 16]),
      u8: tensor(Uint8Array.from({ length: 256 }, (_, i) => i), [256], 'uint8'),
      i16: tensor(Int16Array.from({ length: 65536 }, (_, i) => i - 32768)),
      i32: tensor(new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, -1, 123456789])),
      i64: tensor(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 2n ** 53n + 1n]), [5, 1]),
    })
  })

  it('bool', async () => {
    await echo({ m: tensor(new Uint8Array([1, 0, 0, 1, 1, 1]), [2, 3], 'bool') })
  })

  it('0-d and empty tensors', async () => {
    await echo({
      scalar: tensor(new Float32Array([3.5]), []),
      empty: tensor(new Float32Array(0), [0]),
      empty3: tensor(new BigInt64Array(0), [3, 0, 2], 'int64'),
      scalarBool: tensor(new Uint8Array([1]), [], 'bool'),
    })
  })

  it('a 64 MB tensor', async () => {
    const n = 16 * 1024 * 1024
    const x = new Float32Array(n)
    for (let i = 0; i < n; i += 4099) x[i] = i * 0.5 - 1
    x[n - 1] = -0
    await echo({ big: tensor(x, [16, 1024, 1024]) })
  })

  it('tensors at unaligned offsets of a shared buffer', async () => {
    // A Float64Array over bytes 8.. of a buffer is aligned for its type but not at offset 0.
    const buf = new ArrayBuffer(8 * 11)
    const x = new Float64Array(buf, 8, 10).fill(Math.PI)
    await echo({ x: tensor(x) })
  })
})

describe('tensor argument checks in the driver', () => {
  it('rejects a shape that does not match the data', async () => {
    expect(() => tensor(new Float32Array(6), [4, 2])).toThrow(/holds 8 elements/)
    await expect(worker.call('echo', {}, { tensors: { x: { dtype: 'float32', shape: [7], data: new Float32Array(6) } } }))
      .rejects.toThrow(/tensor 'x'.*needs 28 bytes/)
  })
  it('asks for a dtype where the array type is ambiguous', () => {
    expect(() => tensor(new Uint16Array(2))).toThrow(/float16/)
  })
})
