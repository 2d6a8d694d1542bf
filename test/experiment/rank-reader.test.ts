// data.reader rank: the worker reads its shard's files from the data root itself instead of
// receiving their bytes. The same losses whichever side reads; before the first step a rank that
// sees other data (a file of another size, or none) is refused, naming the rank and the file; the
// requests carry names, so --record is refused. World size 2: test/experiment/world.test.ts.
import { cpSync, readdirSync, truncateSync } from 'node:fs'
import { join, relative } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadRunData } from '../../ts/experiment/data.ts'
import { checkRankData } from '../../ts/experiment/rank-data.ts'
import { runIdentity } from '../../ts/experiment/resume.ts'
import { Experiment, type StepEvent } from '../../ts/experiment/run.ts'
import { workerSettings } from '../../ts/experiment/settings.ts'
import { WorkerGroup, WorkerGroupError } from '../../ts/worker/group.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { closeTinyRun, sharedTinyRun, tinyConfig } from '../setup/tiny-run.ts'

let run: { worker: Worker; dir: string; data: string }
beforeAll(async () => { run = await sharedTinyRun('reader') }, 180_000)
afterAll(() => closeTinyRun(run))

async function losses(reader: 'driver' | 'rank', runDir: string) {
  const exp = new Experiment(tinyConfig(run.data, 'reader', [`data.reader=${reader}`]), { runDir, worker: run.worker, progress: false, log: () => undefined })
  const seen: Array<[number, number, unknown]> = []
  exp.on('step', (e: StepEvent) => seen.push([e.step, e.total, e.losses]))
  await exp.run()
  return seen
}

describe('ranks that read their own data', () => {
  it('give the losses of a driver that sends the bytes', async () => {
    const sent = await losses('driver', join(run.dir, 'driver'))
    const read = await losses('rank', join(run.dir, 'rank'))
    expect(sent).toHaveLength(8)
    expect(read).toEqual(sent)
  }, 300_000)

  it('must see the driver\'s files before the first step: another size or a missing file is refused, naming rank and file', async () => {
    const cfg = tinyConfig(run.data, 'reader', ['data.reader=rank'])
    const { entries } = await runIdentity(cfg, await loadRunData(cfg))
    const group = WorkerGroup.of(run.worker)
    await run.worker.call('configure', workerSettings(cfg, null), { timeoutMs: 600_000 })
    await checkRankData(group, entries) // the driver's own root: the same files

    const copy = join(run.dir, 'copy')
    cpSync(run.data, copy, { recursive: true })
    const image = readdirSync(join(copy, 'JPEGImages')).sort()[3]!
    truncateSync(join(copy, 'JPEGImages', image), 10)
    await run.worker.call('configure', { ...workerSettings(cfg, null), data_root: copy }, { timeoutMs: 600_000 })
    const err = await checkRankData(group, entries).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(WorkerGroupError)
    expect((err as WorkerGroupError).ranks).toEqual([0])
    expect((err as Error).message).toMatch(new RegExp(`^rank 0 does not see the data the driver planned from: JPEGImages/${image.replace('.', '\\.')} under its data root .*copy is 10 bytes, the driver's has \\d+ bytes`))

    const empty = join(run.dir, 'empty')
    cpSync(join(run.data, 'splits'), join(empty, 'splits'), { recursive: true })
    await run.worker.call('configure', { ...workerSettings(cfg, null), data_root: empty }, { timeoutMs: 600_000 })
    const first = relative(run.data, entries.map((e) => join(run.data, e[0])).sort()[0]!)
    await expect(checkRankData(group, entries)).rejects.toThrow(new RegExp(`${first.replace('.', '\\.')} under its data root .*empty is missing`))
  }, 300_000)

  it('cannot be recorded: the requests carry file names, not images', () => {
    expect(() => new Experiment(tinyConfig(run.data, 'reader', ['data.reader=rank']), { runDir: join(run.dir, 'rec'), worker: run.worker, record: join(run.dir, 'r.bin') }))
      .toThrow(/--record .*data\.reader rank .*record with data\.reader driver/)
  })
})
