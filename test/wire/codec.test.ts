// The driver's codec on its own: what it refuses from a worker, and what it sends.
import { describe, expect, it } from 'vitest'
import { decode, encode, packHeader, unpackHeader } from '../../ts/wire/codec.ts'
import { ProtocolError } from '../../ts/wire/errors.ts'
import { tensor } from '../../ts/wire/tensor.ts'

const rep = (tensors: unknown[]) => ({ v: 1, kind: 'rep', id: 3, op: 'echo', instance: 'i', body: {}, tensors })
const meta = { name: 'x', dtype: 'float32', shape: [2], frame: 1, nbytes: 8 }

describe('decode', () => {
  it('reads a reply and views its tensor without copying', () => {
    const frame = Buffer.from(new Float32Array([1, 2]).buffer)
    const msg = decode([packHeader(rep([meta])), frame])
    expect(msg.kind).toBe('rep')
    if (msg.kind !== 'rep') return
    expect(Array.from(msg.tensors.x!.data as Float32Array)).toEqual([1, 2])
    expect((msg.tensors.x!.data as Float32Array).buffer).toBe(frame.buffer)
  })
  it('realigns a frame that sits at an odd offset', () => {
    const backing = Buffer.alloc(9)
    Buffer.from(new Float32Array([5, 6]).buffer).copy(backing, 1)
    const msg = decode([packHeader(rep([meta])), backing.subarray(1)])
    if (msg.kind !== 'rep') throw new Error('not a reply')
    expect(Array.from(msg.tensors.x!.data as Float32Array)).toEqual([5, 6])
  })
  it.each([
    ['a frame of the wrong size', [meta], [Buffer.alloc(12)], /needs 8 bytes.*frame has 12/],
    ['nbytes that disagree with the shape', [{ ...meta, nbytes: 12 }], [Buffer.alloc(8)], /header says 12/],
    ['a missing frame', [meta], [], /names frame 1 but the message has 1/],
    ['an extra frame', [meta], [Buffer.alloc(8), Buffer.alloc(1)], /2 tensor frames but the header names 1/],
    ['two tensors on one frame', [meta, { ...meta, name: 'y' }], [Buffer.alloc(8)], /named by two tensors/],
  ])('refuses %s', (_, tensors, frames, message) => {
    expect(() => decode([packHeader(rep(tensors)), ...frames])).toThrow(message)
  })
  it('refuses a header that is not msgpack, or of the wrong shape', () => {
    expect(() => decode([packHeader(rep([])).subarray(0, 4)])).toThrow(ProtocolError)
    expect(() => decode([packHeader({ ...rep([]), id: 'x' })])).toThrow(/bad rep header at \/id/)
  })
  it('passes unknown kinds through for the caller to ignore', () => {
    expect(decode([packHeader({ v: 1, kind: 'gossip' })]).kind).toBe('unknown')
  })
})

describe('encode', () => {
  it('puts each tensor on its own frame, without copying it', () => {
    const x = tensor(new Int32Array([1, 2, 3]))
    const y = tensor(new Uint16Array([7]), [1, 1], 'bfloat16')
    const frames = encode({ v: 1, kind: 'req' }, { x, y })
    expect(frames).toHaveLength(3)
    expect(frames[1]!.buffer).toBe(x.data.buffer)
    expect(unpackHeader(frames[0]!)).toMatchObject({
      tensors: [{ name: 'x', dtype: 'int32', shape: [3], frame: 1, nbytes: 12 }, { name: 'y', dtype: 'bfloat16', shape: [1, 1], frame: 2, nbytes: 2 }],
    })
  })
  it('keeps integers above 2^32 as numbers and beyond 2^53 as BigInt', () => {
    const h = unpackHeader(packHeader({ a: 2 ** 40, b: 2n ** 60n })) as { a: unknown; b: unknown }
    expect(h.a).toBe(2 ** 40)
    expect(h.b).toBe(2n ** 60n)
  })
})

describe('header packing', () => {
  it('drops properties that are undefined, as JSON does', () => {
    expect(unpackHeader(packHeader({ a: 1, b: undefined, c: { d: undefined, e: 2 } }))).toEqual({ a: 1, c: { e: 2 } })
  })
})
