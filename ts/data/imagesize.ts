// Image dimensions from file headers (JPEG SOF, PNG IHDR), so the driver can draw crop positions
// without decoding pixels.
export function imageSize(bytes: Uint8Array, file: string): { width: number; height: number } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (b.length >= 24 && b.readUInt32BE(0) === 0x89504e47) {
    return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) }
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let i = 2
    while (i + 9 < b.length) {
      if (b[i] !== 0xff) { i++; continue }
      const marker = b[i + 1]!
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue }
      const len = b.readUInt16BE(i + 2)
      // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { height: b.readUInt16BE(i + 5), width: b.readUInt16BE(i + 7) }
      }
      i += 2 + len
    }
    throw new Error(`${file}: JPEG without a frame header`)
  }
  throw new Error(`${file}: not a PNG or JPEG file`)
}

const HEAD_BYTES = 64 * 1024

/** An image file's size from its header, reading only the first 64 KiB unless the JPEG frame
 *  header lies further in (a large EXIF block). Errors name the file. */
export async function readImageSize(path: string): Promise<{ width: number; height: number }> {
  const { open, readFile } = await import('node:fs/promises')
  let head: Uint8Array
  try {
    const fh = await open(path, 'r')
    try {
      const buf = new Uint8Array(HEAD_BYTES)
      const { bytesRead } = await fh.read(buf, 0, HEAD_BYTES, 0)
      head = buf.subarray(0, bytesRead)
    } finally {
      await fh.close()
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new Error(e.code === 'ENOENT' ? `image ${path} does not exist` : `cannot read image ${path}: ${e.message}`, { cause: err })
  }
  try {
    return imageSize(head, path)
  } catch (e) {
    if (head.length < HEAD_BYTES) throw e
    return imageSize(await readFile(path), path)
  }
}
