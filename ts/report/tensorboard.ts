// TensorBoard event files (`events.out.tfevents.*`) written by the driver: TFRecord framing (length,
// masked CRC32C, data, masked CRC32C) around tensorflow.Event protobufs, encoded with protobufjs
// from the few message types a stock TensorBoard reads for scalars and images.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { crc32c } from '@aws-crypto/crc32c'
import protobuf from 'protobufjs'

// From tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto (the fields
// used here, with their numbers).
const PROTO = `
syntax = "proto3";
package tensorflow;
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what { string file_version = 3; Summary summary = 5; }
}
message Summary {
  message Image { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }
  message Value {
    string tag = 1;
    oneof value { float simple_value = 2; Image image = 4; }
  }
  repeated Value value = 1;
}
`
const Event = protobuf.parse(PROTO, { keepCase: true }).root.lookupType('tensorflow.Event')

/** An image value: an encoded PNG and its size; colorspace 3 = RGB. */
export interface TbImage { png: Uint8Array; width: number; height: number }

/** One event file in `dir`; each call appends one record (synchronously: a killed driver loses
 *  at most the record being written, which TensorBoard skips by its CRC). */
export class EventWriter {
  readonly path: string

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true })
    // TensorBoard lists a directory's event files by name: time first, then host and pid.
    this.path = join(dir, `events.out.tfevents.${(Date.now() / 1000).toFixed(0)}.${hostname()}.${process.pid}.prcl`)
    writeFileSync(this.path, record(Event.encode(Event.create({ wall_time: Date.now() / 1000, file_version: 'brain.Event:2' })).finish()))
  }

  /** Scalars at `step`, one record. Non-finite values are written as they are (TensorBoard shows NaN). */
  scalars(step: number, values: Record<string, number>): void {
    const value = Object.entries(values).map(([tag, v]) => ({ tag, simple_value: v }))
    if (value.length) this.write(step, value)
  }

  images(step: number, images: Record<string, TbImage>): void {
    const value = Object.entries(images).map(([tag, im]) => ({
      tag, image: { height: im.height, width: im.width, colorspace: 3, encoded_image_string: im.png },
    }))
    if (value.length) this.write(step, value)
  }

  private write(step: number, value: object[]): void {
    const ev = Event.create({ wall_time: Date.now() / 1000, step, summary: { value } })
    appendFileSync(this.path, record(Event.encode(ev).finish()))
  }
}

/** A TFRecord: uint64 length, masked CRC32C of the length, the data, masked CRC32C of the data. */
function record(data: Uint8Array): Buffer {
  const head = Buffer.alloc(12)
  head.writeBigUInt64LE(BigInt(data.length), 0)
  head.writeUInt32LE(masked(head.subarray(0, 8)), 8)
  const tail = Buffer.alloc(4)
  tail.writeUInt32LE(masked(data), 0)
  return Buffer.concat([head, data, tail])
}

function masked(bytes: Uint8Array): number {
  const c = crc32c(bytes) >>> 0
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0
}
