// `prcl weights fetch`: download a catalog file, hashing as it arrives; it takes its name only
// when every byte matches the pinned sha256, so no half or foreign file is ever found later.
import { createHash } from 'node:crypto'
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { sha256File } from '../experiment/checkpoint.ts'
import type { WeightsFile } from './catalog.ts'
import { WeightsError } from './resolve.ts'

export interface FetchResult {
  path: string
  sha256: string
  /** false: a valid copy was already there. */
  downloaded: boolean
  bytes: number
}

/** Download `entry` into `dir` (from `mirror`/<file> when given, else its published URL).
 *  `progress(bytes, total)` is called as data arrives (total null when the server omits it). */
export async function fetchWeights(entry: WeightsFile, dir: string, opts: { mirror?: string; progress?: (bytes: number, total: number | null) => void } = {}): Promise<FetchResult> {
  const dest = join(dir, entry.file)
  if (existsSync(dest)) {
    const have = await sha256File(dest)
    if (have === entry.sha256) return { path: dest, sha256: have, downloaded: false, bytes: 0 }
    throw new WeightsError(`${dest} is already there with sha256 ${have}, not ${entry.sha256}: delete it and fetch again`)
  }
  const url = opts.mirror ? opts.mirror.replace(/\/*$/, '/') + entry.file : entry.url
  const offline = (why: string) => new WeightsError(`cannot download ${url} (${why}). ` +
    `If this machine is offline, download ${entry.file} elsewhere and put it at ${dest} (sha256 ${entry.sha256})`)
  let res: Response
  try {
    res = await fetch(url, { redirect: 'follow' })
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause
    throw offline(cause?.code ?? cause?.message ?? (e as Error).message)
  }
  if (!res.ok || !res.body) throw offline(`HTTP ${res.status} ${res.statusText}`.trim())
  mkdirSync(dir, { recursive: true })
  const part = `${dest}.part-${process.pid}`
  const hash = createHash('sha256')
  const total = Number(res.headers.get('content-length')) || null
  let bytes = 0
  try {
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>)
    body.on('data', (chunk: Buffer) => { hash.update(chunk); bytes += chunk.length; opts.progress?.(bytes, total) })
    await pipeline(body, createWriteStream(part, { flags: 'wx', mode: 0o644 }))
  } catch (e) {
    rmSync(part, { force: true })
    throw offline(`interrupted after ${bytes} bytes: ${(e as Error).message}`)
  }
  const sha256 = hash.digest('hex')
  if (sha256 !== entry.sha256) {
    rmSync(part, { force: true })
    throw new WeightsError(`${url}: the ${bytes} bytes downloaded have sha256 ${sha256}, not ${entry.file}'s ${entry.sha256}; nothing was kept`)
  }
  renameSync(part, dest)
  return { path: dest, sha256, downloaded: true, bytes }
}
