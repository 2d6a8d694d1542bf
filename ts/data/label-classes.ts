// Which train ids a label image contains (for class-balanced split generation and checks).
import { readFile } from 'node:fs/promises'
import { decodeLabelPng } from './png-decode.ts'

const IGNORE = 255

/** Distinct train ids in decoded label values, mapped through `lut` when given; 255 is dropped. */
export function classesInLabel(values: Uint8Array, lut: readonly number[] | null): Set<number> {
  const present = new Uint8Array(256)
  for (const v of values) present[v] = 1
  const out = new Set<number>()
  for (let v = 0; v < 256; v++) {
    if (!present[v]) continue
    const t = lut ? lut[v]! : v
    if (t !== IGNORE) out.add(t)
  }
  return out
}

/** Read and decode a label PNG, return its train ids. */
export async function labelClasses(path: string, lut: readonly number[] | null): Promise<Set<number>> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (err) {
    throw new Error(`cannot read label ${path}: ${(err as Error).message}`, { cause: err })
  }
  return classesInLabel(decodeLabelPng(bytes, path).data, lut)
}
