// Decoding label PNGs to raw values: 8-bit greyscale or 8-bit palette, non-interlaced (the forms
// VOC and Cityscapes masks come in). Used for split generation and checks; training never
// decodes pixels on the driver side. Palette PNGs return indices; the palette is not needed.
import { inflateSync } from 'node:zlib'
import { crc32 } from './png.ts'

export interface LabelImage { width: number; height: number; data: Uint8Array }

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
const COLOUR_TYPES: Record<number, string> = { 0: 'greyscale', 2: 'RGB', 3: 'palette', 4: 'greyscale+alpha', 6: 'RGBA' }
const MAX_PIXELS = 1 << 28

interface Header { width: number; height: number }

function readHeader(d: Buffer, file: string): Header {
  if (d.length !== 13) throw new Error(`${file}: IHDR chunk has ${d.length} bytes, expected 13`)
  const width = d.readUInt32BE(0), height = d.readUInt32BE(4)
  const depth = d[8]!, colour = d[9]!, compression = d[10]!, filter = d[11]!, interlace = d[12]!
  if (width < 1 || height < 1 || width * height > MAX_PIXELS) throw new Error(`${file}: PNG size ${width}x${height} is out of range`)
  if (compression !== 0 || filter !== 0) throw new Error(`${file}: PNG compression ${compression} / filter method ${filter}, expected 0 / 0`)
  if ((colour !== 0 && colour !== 3) || depth !== 8 || interlace !== 0) {
    const variant = `${COLOUR_TYPES[colour] ?? 'unknown'} (colour type ${colour}), bit depth ${depth}${interlace ? ', Adam7 interlaced' : ''}`
    throw new Error(`${file}: label PNG is ${variant}; expected an 8-bit greyscale or 8-bit palette PNG (colour type 0 or 3), not interlaced`)
  }
  return { width, height }
}

/** Undo the five PNG scanline filters in place (1 byte per pixel), returning the pixel rows. */
function unfilter(raw: Buffer, { width, height }: Header, file: string): Uint8Array {
  const stride = width + 1
  const out = new Uint8Array(width * height)
  for (let y = 0; y < height; y++) {
    const type = raw[y * stride]!
    const src = y * stride + 1, row = y * width, up = row - width
    for (let x = 0; x < width; x++) {
      const v = raw[src + x]!
      const a = x > 0 ? out[row + x - 1]! : 0
      const b = y > 0 ? out[up + x]! : 0
      let p: number
      switch (type) {
        case 0: p = 0; break
        case 1: p = a; break
        case 2: p = b; break
        case 3: p = (a + b) >>> 1; break
        case 4: {
          const c = x > 0 && y > 0 ? out[up + x - 1]! : 0
          const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c)
          p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c
          break
        }
        default: throw new Error(`${file}: row ${y} has PNG filter type ${type}, expected 0..4`)
      }
      out[row + x] = (v + p) & 0xff
    }
  }
  return out
}

/** Decode an 8-bit greyscale or palette PNG to its raw values. `file` names it in errors. */
export function decodeLabelPng(bytes: Uint8Array, file: string): LabelImage {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buf.length < 8 || SIGNATURE.some((b, i) => buf[i] !== b)) throw new Error(`${file} is not a PNG file (bad signature)`)
  let header: Header | undefined
  const idat: Buffer[] = []
  let pos = 8
  let ended = false
  while (!ended) {
    if (pos + 12 > buf.length) throw new Error(`${file}: PNG is truncated (no IEND chunk)`)
    const length = buf.readUInt32BE(pos)
    const type = buf.toString('latin1', pos + 4, pos + 8)
    if (!/^[A-Za-z]{4}$/.test(type)) throw new Error(`${file}: PNG chunk at byte ${pos} has type ${JSON.stringify(type)}, expected four letters (corrupt file)`)
    if (pos + 12 + length > buf.length) throw new Error(`${file}: PNG is truncated inside the ${type} chunk`)
    const data = buf.subarray(pos + 8, pos + 8 + length)
    if (crc32(buf.subarray(pos + 4, pos + 8 + length)) !== buf.readUInt32BE(pos + 8 + length)) {
      throw new Error(`${file}: PNG ${type} chunk has a bad CRC (corrupt file)`)
    }
    if (header === undefined && type !== 'IHDR') throw new Error(`${file}: PNG starts with a ${type} chunk, expected IHDR`)
    if (type === 'IHDR') {
      if (header) throw new Error(`${file}: PNG has two IHDR chunks`)
      header = readHeader(data, file)
    } else if (type === 'IDAT') idat.push(data)
    else if (type === 'IEND') ended = true
    pos += 12 + length
  }
  if (!header) throw new Error(`${file}: PNG has no IHDR chunk`)
  if (idat.length === 0) throw new Error(`${file}: PNG has no image data (IDAT)`)
  const expected = header.height * (header.width + 1)
  let raw: Buffer
  try {
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: expected + 1 })
  } catch (err) {
    throw new Error(`${file}: PNG image data does not inflate (${(err as Error).message})`, { cause: err })
  }
  if (raw.length !== expected) {
    throw new Error(`${file}: PNG image data has ${raw.length} bytes, ${header.width}x${header.height} needs ${expected}`)
  }
  return { width: header.width, height: header.height, data: unfilter(raw, header, file) }
}
