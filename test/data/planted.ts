// A small VOC-layout dataset (21 classes, no classes.txt) with planted bad files, for the data
// pre-flight (ts/data/check.ts) and `prcl check-data`. Split files sit where the synthetic-demo
// preset looks for them, so `--config synthetic-demo --set data.root=… --set model.num_classes=21`
// reads it.
import { encodeRgbJpeg } from '../../ts/data/jpeg.ts'
import { encodeLabelPng, encodeRgbPng } from '../../ts/data/png.ts'
import { makeTree } from './tree.ts'

export const W = 40, H = 30

export function jpeg(w = W, h = H, seed = 1): Buffer {
  const rgb = new Uint8Array(w * h * 3)
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 31 + seed * 17 + ((i / 97) | 0)) & 0xff
  return encodeRgbJpeg(w, h, rgb)
}

export function label(w = W, h = H, plant?: { value: number; pixels: number }): Buffer {
  const idx = new Uint8Array(w * h)
  for (let i = 0; i < idx.length; i++) idx[i] = (i % 7 === 0) ? 255 : i % 21
  if (plant) idx.fill(plant.value, 0, plant.pixels)
  return encodeLabelPng(w, h, idx)
}

export const SPLITS = {
  labeled: 'splits/16/0/labeled_filename.txt',
  unlabeled: 'splits/16/0/unlabeled_filename.txt',
  val: 'splits/16/0/valid_filename.txt',
}

/** What is planted, by sample id. */
export const PLANTED = {
  truncated: 'l_truncated', // labeled: the JPEG cut inside its image data
  rgbLabel: 'l_rgblabel', // labeled: an RGB label PNG
  sizeMismatch: 'l_size', // labeled: label 32x24, image 40x30
  value50: 'l_value50', // labeled: 50 in a 21-class label (12 pixels)
  missingLabel: 'l_nolabel', // labeled: no label file
  missingImage: 'u_noimage', // unlabeled: no image file
  notImage: 'u_text', // unlabeled: a text file named .jpg
  valValue: 'v_value30', // val: 30 in the label (5 pixels)
} as const

/** Write the dataset under `root`: 3 good samples per list plus the planted ones. */
export function plantedDataset(root: string, { blankLineAtEnd = true } = {}): string {
  const files: Record<string, string | Uint8Array> = {}
  const good = (id: string) => { files[`JPEGImages/${id}.jpg`] = jpeg(); files[`SegmentationClass/${id}.png`] = label() }
  const ids = { labeled: ['l_a', 'l_b', 'l_c'], unlabeled: ['u_a', 'u_b', 'u_c'], val: ['v_a', 'v_b', 'v_c'] }
  for (const id of [...ids.labeled, ...ids.unlabeled, ...ids.val]) good(id)
  const full = jpeg()
  files[`JPEGImages/${PLANTED.truncated}.jpg`] = full.subarray(0, Math.floor(full.length * 0.7))
  files[`SegmentationClass/${PLANTED.truncated}.png`] = label()
  files[`JPEGImages/${PLANTED.rgbLabel}.jpg`] = jpeg()
  files[`SegmentationClass/${PLANTED.rgbLabel}.png`] = encodeRgbPng(W, H, new Uint8Array(W * H * 3).fill(128))
  files[`JPEGImages/${PLANTED.sizeMismatch}.jpg`] = jpeg()
  files[`SegmentationClass/${PLANTED.sizeMismatch}.png`] = label(32, 24)
  files[`JPEGImages/${PLANTED.value50}.jpg`] = jpeg()
  files[`SegmentationClass/${PLANTED.value50}.png`] = label(W, H, { value: 50, pixels: 12 })
  files[`JPEGImages/${PLANTED.missingLabel}.jpg`] = jpeg()
  files[`JPEGImages/${PLANTED.notImage}.jpg`] = 'not an image\n'
  files[`JPEGImages/${PLANTED.valValue}.jpg`] = jpeg()
  files[`SegmentationClass/${PLANTED.valValue}.png`] = label(W, H, { value: 30, pixels: 5 })
  const end = blankLineAtEnd ? '\n\n' : '\n'
  files[SPLITS.labeled] = [...ids.labeled, PLANTED.truncated, PLANTED.rgbLabel, PLANTED.sizeMismatch, PLANTED.value50, PLANTED.missingLabel].join('\n') + end
  files[SPLITS.unlabeled] = [...ids.unlabeled, PLANTED.missingImage, PLANTED.notImage].join('\n') + end
  files[SPLITS.val] = [...ids.val, PLANTED.valValue].join('\n') + end
  return makeTree(root, files)
}

/** The `--set` overrides that point the synthetic-demo preset at a planted dataset. */
export function plantedSets(root: string): string[] {
  return [`data.root=${JSON.stringify(root)}`, 'model.num_classes=21']
}
