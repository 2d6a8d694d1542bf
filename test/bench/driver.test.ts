// `prcl bench driver`: what one driver pushes to a real worker over ipc, tcp and CURVE tcp (a rank
// that connects with keys, as on a cluster), with its CPU time per MB, and what one GPU's step costs
// the driver under each reader: the files' bytes, or their paths.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import type { ReaderCase, TransportCase } from '../../ts/bench/driver.ts'
import { ROOT } from '../../ts/paths.ts'

describe('prcl bench driver', () => {
  it('measures every transport and both readers and prints one JSON object', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, 'ts/cli/prcl.mjs'), 'bench', 'driver', '--json', '--steps', '2'],
      { cwd: ROOT, encoding: 'utf8', timeout: 300_000 })
    const r = JSON.parse(stdout) as { transports: TransportCase[]; readers: ReaderCase[]; machine: object }
    expect(r.transports.map((t) => t.transport)).toEqual(['ipc', 'tcp', 'curve'])
    for (const t of r.transports) {
      expect(t.mb_per_s).toBeGreaterThan(0)
      expect(t.driver_cpu_ms_per_mb).toBeGreaterThan(0)
    }
    expect(r.readers.map((c) => [c.dataset, c.images_per_rank_step])).toEqual([['voc', 4], ['cityscapes', 12]])
    for (const c of r.readers) {
      // A rank that reads its own files costs the driver a few hundred bytes of paths, not the images.
      expect(c.driver_reader.bytes).toBeGreaterThan(100 * c.rank_reader.bytes)
      expect(c.rank_reader.bytes).toBeLessThan(4096)
    }
    expect(r.machine).toBeDefined()
  }, 300_000)
})
