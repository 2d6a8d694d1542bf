// The data layer: datasets, split files, label PNG decoding.
import { cityscapesDataset, type CityscapesOptions } from './cityscapes.ts'
import type { Dataset } from './dataset.ts'
import { folderDataset } from './folder.ts'
import { vocDataset } from './voc.ts'

export type DatasetKind = 'voc' | 'cityscapes' | 'folder'
export type OpenDatasetOptions = CityscapesOptions

/** Open a dataset of the given kind at `root` (which must be a directory). */
export function openDataset(kind: DatasetKind, root: string, opts: OpenDatasetOptions = {}): Dataset {
  switch (kind) {
    case 'voc': return vocDataset(root)
    case 'cityscapes': return cityscapesDataset(root, opts)
    case 'folder': return folderDataset(root)
    default: throw new Error(`unknown dataset kind ${JSON.stringify(kind)}; expected 'voc', 'cityscapes' or 'folder'`)
  }
}

export { readSample, checkSamplesExist, type Dataset, type SampleRef, type Sample, type ResolveOptions } from './dataset.ts'
export { parseSplitText, readSplit, splitIdentity, identityOfText, fileStem, generateSplit, type SplitEntry, type SplitIdentity } from './splits.ts'
export { decodeLabelPng, type LabelImage } from './png-decode.ts'
export { classesInLabel, labelClasses } from './label-classes.ts'
export { checkCityscapesVal, CITYSCAPES_CLASSES, LABEL_ID_TO_TRAIN_ID, type CityscapesOptions } from './cityscapes.ts'
export { VOC_CLASSES } from './voc.ts'
export { checkSample, checkSamples, checkImageBytes, formatReport, makeReport, type CheckLevel, type CheckReport, type Finding, type FindingKind, type SampleCheck } from './check.ts'
