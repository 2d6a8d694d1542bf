// Seeded test data in TypeScript: the same seed gives the same tensors on every machine.
import { tensor, type Tensor } from '../../ts/wire/tensor.ts'

export function mulberry32(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function gaussian(rnd: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd())
}

export function randn(rnd: () => number, shape: number[]): Tensor<'float32'> {
  const n = shape.reduce((a, b) => a * b, 1)
  return tensor(Float32Array.from({ length: n }, () => gaussian(rnd)), shape)
}

export function uniform(rnd: () => number, shape: number[], lo: number, hi: number): Tensor<'float32'> {
  const n = shape.reduce((a, b) => a * b, 1)
  return tensor(Float32Array.from({ length: n }, () => lo + (hi - lo) * rnd()), shape)
}

export function b64(t: Tensor): string {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64')
}

export function fromB64(s: string, dtype: 'float32' | 'int64', shape: number[]): Tensor {
  const buf = Buffer.from(s, 'base64')
  const copy = new Uint8Array(buf.byteLength)
  copy.set(buf)
  const data = dtype === 'float32' ? new Float32Array(copy.buffer) : new BigInt64Array(copy.buffer)
  return tensor(data as Float32Array, shape) as Tensor
}
