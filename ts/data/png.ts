// A small PNG writer (8-bit RGB and palette images): enough for synthetic datasets and tests,
// without a native image library.
import { deflateSync } from 'node:zlib'

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

/** CRC-32 as used by PNG chunks (and zlib). */
export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** One PNG chunk: length, type, data, CRC. */
export function pngChunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length)
  out.writeUInt32BE(data.length, 0)
  out.write(type, 4, 'ascii')
  Buffer.from(data).copy(out, 8)
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length)
  return out
}

function encode(width: number, height: number, colorType: 2 | 3, rows: Uint8Array, bpp: number, palette?: Uint8Array): Buffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`bad PNG size ${width}x${height}`)
  }
  if (rows.length !== width * height * bpp) throw new RangeError(`PNG data has ${rows.length} bytes, ${width}x${height}x${bpp} needs ${width * height * bpp}`)
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8
  ihdr[9] = colorType
  const raw = Buffer.alloc(height * (1 + width * bpp))
  for (let y = 0; y < height; y++) {
    raw[y * (1 + width * bpp)] = 0 // filter: none
    Buffer.from(rows.buffer, rows.byteOffset + y * width * bpp, width * bpp).copy(raw, y * (1 + width * bpp) + 1)
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    ...(palette ? [pngChunk('PLTE', palette)] : []),
    pngChunk('IDAT', deflateSync(raw)),
    pngChunk('IEND', new Uint8Array(0)),
  ])
}

/** RGB PNG from interleaved bytes [H, W, 3]. */
export function encodeRgbPng(width: number, height: number, rgb: Uint8Array): Buffer {
  return encode(width, height, 2, rgb, 3)
}

/** The Pascal VOC colour map: class k's colour, as in the dataset's SegmentationClass PNGs. */
export function vocPalette(): Uint8Array {
  const p = new Uint8Array(256 * 3)
  for (let i = 0; i < 256; i++) {
    let c = i
    let r = 0, g = 0, b = 0
    for (let j = 0; j < 8; j++) {
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    }
    p.set([r, g, b], i * 3)
  }
  return p
}

/** Palette PNG of class indices [H, W] (255 = ignore), with the VOC colours. */
export function encodeLabelPng(width: number, height: number, indices: Uint8Array, palette = vocPalette()): Buffer {
  return encode(width, height, 3, indices, 1, palette)
}
