// Pascal VOC 2012 (+ SBD train_aug):
//   <root>/JPEGImages/<id>.jpg
//   <root>/SegmentationClassAug/<id>.png   (if that folder exists, else SegmentationClass/)
// Bare ids and single paths take labels from that folder; UniMatch pairs use their own mask path
// (their "SegmentationClass/" must then hold the train_aug masks). A `classes.txt` at the root
// (one name per line) replaces the 21 VOC classes: VOC-layout datasets of other classes, such as
// the synthetic one (prcl synth), go through this same code path.
import { join, resolve as resolvePath } from 'node:path'
import { checkRoot, checkSamplesExist, isDir, isFile, type Dataset, type ResolveOptions, type SampleRef } from './dataset.ts'
import { readClassNames } from './folder.ts'
import type { SplitEntry } from './splits.ts'

export const VOC_CLASSES = [
  'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
  'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor',
]

export function vocDataset(root: string): Dataset {
  root = resolvePath(root)
  checkRoot('VOC', root)
  const labelDir = isDir(join(root, 'SegmentationClassAug')) ? 'SegmentationClassAug' : 'SegmentationClass'
  const classes = isFile(join(root, 'classes.txt')) ? readClassNames(join(root, 'classes.txt')) : [...VOC_CLASSES]
  return {
    name: 'voc',
    root,
    numClasses: classes.length,
    classNames: classes,
    labelLut: null,
    resolve(entries: SplitEntry[], opts: ResolveOptions): SampleRef[] {
      const refs = entries.map((e): SampleRef => ({
        id: e.id,
        image: e.image !== undefined ? resolvePath(root, e.image) : join(root, 'JPEGImages', `${e.id}.jpg`),
        label: !opts.needLabels ? null : resolvePath(root, e.label ?? join(labelDir, `${e.id}.png`)),
      }))
      const hint = opts.needLabels && !isDir(join(root, labelDir))
        ? 'neither SegmentationClassAug/ nor SegmentationClass/ exists under the root'
        : undefined
      if (!opts.allowMissing) checkSamplesExist(refs, entries, root, opts.splitFile, hint)
      return refs
    },
  }
}
