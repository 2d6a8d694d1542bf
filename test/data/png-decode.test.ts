// The label PNG decoder: round trips, all five scanline filters, a PNG written by PIL, refusals.
import { describe, expect, it } from 'vitest'
import { decodeLabelPng } from '../../ts/data/png-decode.ts'
import { encodeLabelPng, encodeRgbPng } from '../../ts/data/png.ts'
import { filterRows, pngFromScanlines } from './png-fixtures.ts'

function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  let s = seed
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    out[i] = s >>> 24
  }
  return out
}

// Written by PIL 9.4 (Image.fromarray(a, 'L').save): 24x19 greyscale, rows filtered with
// types 0, 1, 2 and 4 (PIL picks per row). Pixel values are given by `pilPixel`.
const PIL_PNG = 'iVBORw0KGgoAAAANSUhEUgAAABMAAAAYCAAAAAA9/JnTAAAArklEQVR4nGNkYMcATAyYgNpijE6YYizctBdjYtx9xuSHcFdwxc+LDN0Zy8yUUllYjh4UNzgpc+zMp3M3/5+5dG7aW8nrDFsKmt9uvuAp6bBvxskwq1Ker/a3WbSeixgdUi5l1DDmM++Utrhg7+bIdP/Bw0eP7z999vzFy6ev37x99/7DR4ZAAbXJMTWfj30oC24X/2lz8RD/OsZFrBiAhZMYMU5MMU4MdZwYeqFsAJGaQ6BDC/U5AAAAAElFTkSuQmCC'
function pilPixel(x: number, y: number): number {
  const v = y < 6 ? x * 7 : y < 12 ? y * 11 : y < 18 ? (x * 13 + y * 29) ** 2 % 251 : x * 5 + y * 9
  return v % 256
}

describe('decodeLabelPng', () => {
  it('round-trips encodeLabelPng (palette) output, ignore value included', () => {
    const [w, h] = [37, 23]
    const data = noise(w * h, 7).map((v) => (v > 240 ? 255 : v % 21))
    const img = decodeLabelPng(encodeLabelPng(w, h, data), 'a.png')
    expect(img.width).toBe(w)
    expect(img.height).toBe(h)
    expect(Buffer.from(img.data).equals(Buffer.from(data))).toBe(true)
  })

  it('decodes a hand-filtered greyscale image: Sub, Up, Average and all three Paeth choices', () => {
    // Filtered bytes and their decoded values were checked against PIL 9.4.
    const scan = [1, 10, 5, 250, 100, 2, 1, 2, 3, 4, 3, 10, 20, 30, 40, 4, 185, 3, 53, 0]
    const img = decodeLabelPng(pngFromScanlines({ width: 4, height: 4 }, scan), 'hand.png')
    expect(Array.from(img.data)).toEqual([10, 15, 9, 109, 11, 17, 12, 113, 15, 36, 54, 123, 200, 203, 0, 54])
  })

  it.each([0, 1, 2, 3, 4])('undoes filter type %i on every row (reference encoder, random pixels)', (t) => {
    const [w, h] = [29, 11]
    const px = noise(w * h, 100 + t)
    const png = pngFromScanlines({ width: w, height: h, colourType: 3, palette: true }, filterRows(px, w, h, Array(h).fill(t)))
    expect(Array.from(decodeLabelPng(png, 'f.png').data)).toEqual(Array.from(px))
  })

  it('undoes mixed filters row by row', () => {
    const [w, h] = [17, 10]
    const px = noise(w * h, 3)
    const types = [4, 3, 2, 1, 0, 4, 4, 3, 1, 2]
    expect(Array.from(decodeLabelPng(pngFromScanlines({ width: w, height: h }, filterRows(px, w, h, types)), 'm.png').data)).toEqual(Array.from(px))
  })

  it('decodes a PNG written by PIL', () => {
    const img = decodeLabelPng(Buffer.from(PIL_PNG, 'base64'), 'pil.png')
    expect([img.width, img.height]).toEqual([19, 24])
    const want = Array.from({ length: 19 * 24 }, (_, i) => pilPixel(i % 19, Math.floor(i / 19)))
    expect(Array.from(img.data)).toEqual(want)
  })

  it('accepts a subarray view at an offset', () => {
    const png = encodeLabelPng(3, 2, Uint8Array.from([0, 1, 2, 3, 4, 255]))
    const backing = new Uint8Array(png.length + 5)
    backing.set(png, 5)
    expect(Array.from(decodeLabelPng(backing.subarray(5), 'v.png').data)).toEqual([0, 1, 2, 3, 4, 255])
  })

  describe('refuses, naming the file', () => {
    const good = encodeLabelPng(8, 8, noise(64, 1))
    it.each([
      ['an RGB PNG', encodeRgbPng(2, 2, new Uint8Array(12)), /rgb\.png: label PNG is RGB \(colour type 2\), bit depth 8; expected an 8-bit greyscale or 8-bit palette/],
      ['a 16-bit greyscale PNG', pngFromScanlines({ width: 1, height: 1, depth: 16 }, [0, 0, 0]), /rgb\.png: label PNG is greyscale \(colour type 0\), bit depth 16/],
      ['an RGBA PNG', pngFromScanlines({ width: 1, height: 1, colourType: 6 }, [0, 0, 0, 0, 0]), /RGBA \(colour type 6\)/],
      ['an interlaced PNG', pngFromScanlines({ width: 1, height: 1, interlace: 1 }, [0, 0]), /Adam7 interlaced/],
      ['a truncated PNG', good.subarray(0, good.length - 20), /rgb\.png: PNG is truncated/],
      ['a PNG cut inside the header', good.subarray(0, 20), /rgb\.png: PNG is truncated inside the IHDR chunk/],
      ['a JPEG', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0, 0, 0, 0]), /rgb\.png is not a PNG file/],
      ['an unknown filter type', pngFromScanlines({ width: 2, height: 1 }, [5, 0, 0]), /rgb\.png: row 0 has PNG filter type 5, expected 0\.\.4/],
      ['too little image data', pngFromScanlines({ width: 2, height: 2 }, [0, 1, 2]), /rgb\.png: PNG image data has 3 bytes, 2x2 needs 6/],
      ['too much image data', pngFromScanlines({ width: 1, height: 1 }, [0, 1, 2, 3]), /rgb\.png: PNG image data/],
    ])('%s', (_, bytes, message) => {
      expect(() => decodeLabelPng(bytes, 'rgb.png')).toThrow(message)
    })
    it('a corrupt chunk (bad CRC)', () => {
      const bad = Buffer.from(good)
      bad[bad.length - 17] = bad[bad.length - 17]! ^ 0xff // the last IDAT byte (before its CRC and the 12-byte IEND)
      expect(() => decodeLabelPng(bad, 'c.png')).toThrow(/c\.png: PNG IDAT chunk has a bad CRC/)
    })
    it('a chunk whose type is not four letters', () => {
      const bad = Buffer.from(good)
      bad[12] = 0x30 // the first letter of IHDR
      expect(() => decodeLabelPng(bad, 'c.png')).toThrow(/c\.png: PNG chunk at byte 8 has type "0HDR", expected four letters/)
    })
  })
})
