// The presets' split files: a missing one is named with its source repository and hash, and a
// present one is recorded as matching the published file or not.
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../ts/config/load.ts'
import { encodeRgbJpeg } from '../../ts/data/jpeg.ts'
import { loadRunData } from '../../ts/experiment/data.ts'
import { ROOT } from '../../ts/paths.ts'
import { makeTree, tempDir } from '../data/tree.ts'

const PRCL_SPLIT = join(ROOT, '..', 'shared', 'data', 'splits', 'prcl', 'VOC_split')

describe('split files of the presets', () => {
  it('names the source of a missing split file', async () => {
    const root = makeTree(tempDir('voc-nosplit'), ['JPEGImages/2007_000032.jpg', 'SegmentationClassAug/2007_000032.png'])
    const cfg = loadConfig('voc-662-prcl', [`data.root=${root}`])
    await expect(loadRunData(cfg)).rejects.toThrow(
      /data\.splits\.labeled: .*VOC_split\/662\/3407\/labeled_filename\.txt does not exist\. It is VOC_split\/662\/3407\/labeled_filename\.txt of github\.com\/Haoyu-Xie\/PRCL \(sha256 e9bb5d18af804179…\).*--set data\.splits\.labeled=PATH/)
  })

  it('records whether each file is the published one', async () => {
    const root = tempDir('voc-662')
    cpSync(PRCL_SPLIT, join(root, 'VOC_split'), { recursive: true })
    const ids = ['labeled', 'unlabeled', 'valid'].flatMap((f) =>
      readFileSync(join(root, 'VOC_split', '662', '3407', `${f}_filename.txt`), 'utf8').split('\n').filter(Boolean))
    // The run reads every training image's header when it starts: a real (tiny) JPEG each.
    const jpeg = encodeRgbJpeg(8, 6, new Uint8Array(8 * 6 * 3))
    makeTree(root, Object.fromEntries(ids.flatMap((id) => [[`JPEGImages/${id}.jpg`, jpeg], [`SegmentationClassAug/${id}.png`, '']])))
    const cfg = loadConfig('voc-662-prcl', [`data.root=${root}`])
    const data = await loadRunData(cfg)
    expect(data.labeled).toHaveLength(662)
    expect(data.sizes.labeled[0]).toEqual({ width: 8, height: 6 })
    expect(data.splits.labeled.published).toMatchObject({ repo: 'Haoyu-Xie/PRCL', sha16: 'e9bb5d18af804179', matches: true })
    expect(data.splits.val.published?.matches).toBe(true)
    // A locally edited copy is still used, and recorded as not the published file.
    const file = join(root, 'VOC_split', '662', '3407', 'labeled_filename.txt')
    writeFileSync(file, readFileSync(file, 'utf8').split('\n').slice(1).join('\n'))
    const edited = await loadRunData(cfg)
    expect(edited.labeled).toHaveLength(661)
    expect(edited.splits.labeled.published?.matches).toBe(false)
  }, 60_000)
})
