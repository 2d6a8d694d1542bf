// Recording a run's requests (`--record FILE`) so the worker can replay them in-process, without a
// driver (`python -m prcl_worker.replay FILE`): the same losses, reproducible in pure Python.
// Format: per request, a little-endian uint32 frame count, then per frame a uint64 length and the
// bytes; frame 0 is the msgpack header {op, body, tensors}, the rest are tensor frames, as on the wire.
import { closeSync, openSync, writeSync } from 'node:fs'
import { encode } from '../wire/codec.ts'
import type { Tensors } from '../wire/tensor.ts'

export class Recorder {
  private fd: number

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w')
  }

  write(op: string, body: object, tensors: Tensors = {}): void {
    const frames = encode({ op, body }, tensors)
    const count = Buffer.alloc(4)
    count.writeUInt32LE(frames.length)
    writeSync(this.fd, count)
    for (const f of frames) {
      const len = Buffer.alloc(8)
      len.writeBigUInt64LE(BigInt(f.byteLength))
      writeSync(this.fd, len)
      writeSync(this.fd, f)
    }
  }

  close(): void {
    closeSync(this.fd)
  }
}
