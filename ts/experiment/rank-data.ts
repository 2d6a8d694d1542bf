// data.reader rank: each rank reads its shard's files from the data root as its machine sees it.
// Before the first step every rank must see the files the driver planned from: the size of every
// file of the run's dataset fingerprint (ts/experiment/resume.ts), compared rank by rank. Sizes,
// not modification times: a copy made on another machine keeps the bytes, not always the times.
import type { DatasetEntries } from './checkpoint.ts'
import { WorkerGroup, WorkerGroupError } from '../worker/group.ts'

/** Files per data_files request (a request's header stays well under the worker's 1 MiB). */
const CHUNK = 2048

export async function checkRankData(group: WorkerGroup, entries: DatasetEntries): Promise<void> {
  for (let at = 0; at < entries.length; at += CHUNK) {
    const part = entries.slice(at, at + CHUNK)
    const replies = await group.all('data_files', () => ({ files: part.map((e) => e[0]) }), { timeoutMs: 600_000 })
    replies.forEach((r, rank) => {
      const i = r.body.sizes.findIndex((size, k) => size !== part[k]![1])
      if (i < 0) return
      const [file, size] = part[i]!
      const seen = r.body.sizes[i]! < 0 ? 'missing' : `${r.body.sizes[i]} bytes`
      throw new WorkerGroupError(`rank ${rank} does not see the data the driver planned from: ${file} under its data root ${r.body.root} is ${seen}, ` +
        `the driver's ${size < 0 ? 'is missing' : `has ${size} bytes`}. With data.reader rank every rank reads its files itself: give it the same data ` +
        '(a shared filesystem, or a copy started with --data-root DIR), or set data.reader driver', [rank])
    })
  }
}
