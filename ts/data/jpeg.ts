// JPEG encoding and decoding through jpeg-js (pure JavaScript, deterministic: the same pixels and
// quality always give the same bytes; baseline JFIF, 4:4:4 sampling, no timestamps or comments).
//
// jpeg-js's public encode() builds a fresh encoder for every image, and building one (its Huffman
// and category tables) costs ~20 ms: 6 s for the 300 small images of the synthetic demo dataset.
// The encoder object itself is reusable but not exported, so it is loaded once from the package's
// own lib/encoder.js (version pinned in package.json) and reused. Its output is byte-identical to
// encode()'s (tested); if the file ever stops exposing JPEGEncoder, encode() is used instead.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { runInThisContext } from 'node:vm'
import { decode, encode } from 'jpeg-js'

interface JpegEncoder {
  encode(image: { data: Uint8Array; width: number; height: number }, quality: number): Uint8Array
}

let shared: JpegEncoder | null | undefined

function reusableEncoder(): JpegEncoder | null {
  if (shared !== undefined) return shared
  try {
    const require = createRequire(import.meta.url)
    const file = require.resolve('jpeg-js/lib/encoder.js')
    const factory = runInThisContext(
      `(function (module, exports, require) {${readFileSync(file, 'utf8')}\n;return typeof JPEGEncoder === 'function' ? JPEGEncoder : null})`,
      { filename: file },
    ) as (module: object, exports: object, require: NodeJS.Require) => (new (quality: number) => JpegEncoder) | null
    const Encoder = factory({ exports: {} }, {}, require)
    shared = Encoder ? new Encoder(90) : null
  } catch {
    shared = null
  }
  return shared
}

function toRgba(width: number, height: number, rgb: Uint8Array): Uint8Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`bad JPEG size ${width}x${height}`)
  }
  if (rgb.length !== width * height * 3) throw new RangeError(`JPEG data has ${rgb.length} bytes, ${width}x${height}x3 needs ${width * height * 3}`)
  const rgba = new Uint8Array(width * height * 4)
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgba[j] = rgb[i]!
    rgba[j + 1] = rgb[i + 1]!
    rgba[j + 2] = rgb[i + 2]!
    rgba[j + 3] = 255
  }
  return rgba
}

/** Baseline JPEG from interleaved RGB bytes [H, W, 3]; quality 1..100. `reuse: false` takes jpeg-js's public encode(). */
export function encodeRgbJpeg(width: number, height: number, rgb: Uint8Array, quality = 90, { reuse = true } = {}): Buffer {
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new RangeError(`JPEG quality must be an integer in 1..100, got ${quality}`)
  const image = { data: toRgba(width, height, rgb), width, height }
  const encoder = reuse ? reusableEncoder() : null
  if (!encoder) return encode(image, quality).data
  const out = encoder.encode(image, quality)
  return Buffer.isBuffer(out) ? out : Buffer.from(out)
}

/** Decodes a JPEG to interleaved RGB bytes [H, W, 3]. */
export function decodeRgbJpeg(bytes: Uint8Array): { width: number; height: number; rgb: Uint8Array } {
  const img = decode(bytes, { useTArray: true, formatAsRGBA: false })
  return { width: img.width, height: img.height, rgb: img.data }
}
