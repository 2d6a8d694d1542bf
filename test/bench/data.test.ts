// `prcl bench data`: the input path measured end to end by a real worker (read → send → decode →
// augment), one JSON object with images_per_s, and every decode-thread setting asked for.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import type { DataCase } from '../../ts/bench/data.ts'
import { ROOT } from '../../ts/paths.ts'

describe('prcl bench data', () => {
  it('measures VOC-sized JPEGs at each decode-thread setting and prints one JSON object', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, 'ts/cli/prcl.mjs'), 'bench', 'data', '--json', '--dataset', 'voc',
      '--steps', '3', '--decode-threads', '1,2', '--device', 'cpu'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 })
    const r = JSON.parse(stdout) as { images_per_s: number; steps_per_s: number; cases: DataCase[]; machine: object }
    expect(r.cases.map((c) => [c.dataset, c.decode_threads, c.batch, c.image])).toEqual([['voc', 1, 4, '500×375 JPEG'], ['voc', 2, 4, '500×375 JPEG']])
    expect(r.images_per_s).toBe(r.cases[1]!.images_per_s)
    for (const c of r.cases) {
      expect(c.images_per_s).toBeGreaterThan(0)
      expect(c.steps_per_s * c.batch).toBeCloseTo(c.images_per_s, 0)
      expect(c.decode_ms).toBeGreaterThan(0)
      expect(c.augment_ms).toBeGreaterThan(0)
      expect(c.file_kb).toBeGreaterThan(20) // photograph-like files, not flat colour
      expect(c.device).toBe('cpu')
    }
    expect(r.machine).toBeDefined()
  }, 300_000)
})
