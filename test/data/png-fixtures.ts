// Hand-built PNGs for decoder tests: arbitrary IHDR fields and raw (already filtered) scanlines.
import { deflateSync } from 'node:zlib'
import { pngChunk } from '../../ts/data/png.ts'

export interface PngFields { width: number; height: number; depth?: number; colourType?: number; interlace?: number; palette?: boolean }

/** A PNG whose IDAT holds exactly `scanlines` (each row: filter byte + data), deflated. */
export function pngFromScanlines(f: PngFields, scanlines: Uint8Array | number[]): Buffer {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(f.width, 0)
  ihdr.writeUInt32BE(f.height, 4)
  ihdr[8] = f.depth ?? 8
  ihdr[9] = f.colourType ?? 0
  ihdr[12] = f.interlace ?? 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    ...(f.palette ? [pngChunk('PLTE', new Uint8Array(256 * 3))] : []),
    pngChunk('IDAT', deflateSync(Uint8Array.from(scanlines))),
    pngChunk('IEND', new Uint8Array(0)),
  ])
}

/** Reference PNG filtering (encoder side, 1 byte per pixel): row y uses filter types[y]. */
export function filterRows(pixels: Uint8Array, width: number, height: number, types: number[]): Uint8Array {
  const out = new Uint8Array(height * (width + 1))
  const px = (x: number, y: number) => (x < 0 || y < 0 ? 0 : pixels[y * width + x]!)
  for (let y = 0; y < height; y++) {
    const t = types[y]!
    out[y * (width + 1)] = t
    for (let x = 0; x < width; x++) {
      const a = px(x - 1, y), b = px(x, y - 1), c = px(x - 1, y - 1)
      const p = a + b - c
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c
      const pred = [0, a, b, Math.floor((a + b) / 2), paeth][t]!
      out[y * (width + 1) + 1 + x] = (px(x, y) - pred) & 0xff
    }
  }
  return out
}
