// Cityscapes, in two layouts (prcl-method.md §12.1):
//   official  <root>/leftImg8bit/{train,val}/<city>/<stem>.png
//             <root>/gtFine/{train,val}/<city>/<base>_gtFine_{labelIds,labelTrainIds}.png
//   prcl      the same images; labels in <root>/{train,val}/<city>/… (no gtFine/ level)
// with <stem> = <base>_leftImg8bit and <city> = the text before the first '_'.
// Labels are labelIds (mapped to train ids by `labelLut`, §12.3) or pre-converted labelTrainIds
// (`labelLut` null). By default the layout and label kind are detected from the folders; when
// both kinds of label files exist, labelTrainIds are used.
import { readdirSync } from 'node:fs'
import { basename, dirname, join, resolve as resolvePath } from 'node:path'
import { checkRoot, checkSamplesExist, isDir, isFile, type Dataset, type ResolveOptions, type SampleRef } from './dataset.ts'
import type { SplitEntry } from './splits.ts'

export const CITYSCAPES_CLASSES = [
  'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign', 'vegetation', 'terrain',
  'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle',
]

/** labelId → trainId (prcl-method.md §12.3); every other value maps to 255 (ignore). */
export const LABEL_ID_TO_TRAIN_ID: readonly number[] = (() => {
  const lut = new Array<number>(256).fill(255)
  const ids = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
  ids.forEach((labelId, trainId) => { lut[labelId] = trainId })
  return lut
})()

export const VAL_CITIES = ['frankfurt', 'lindau', 'munster'] as const
export const TEST_CITIES = ['berlin', 'bielefeld', 'bonn', 'leverkusen', 'mainz', 'munich'] as const

export type CityscapesLayout = 'official' | 'prcl'
export type CityscapesLabels = 'labelIds' | 'labelTrainIds'
export interface CityscapesOptions { layout?: CityscapesLayout; labels?: CityscapesLabels }

const SUFFIX = '_leftImg8bit'
const cityOf = (id: string) => id.split('_', 1)[0]!

function countCities(entries: SplitEntry[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const e of entries) counts.set(cityOf(e.id), (counts.get(cityOf(e.id)) ?? 0) + 1)
  return counts
}

const listCounts = (counts: Map<string, number>, keep: (city: string) => boolean) =>
  [...counts].filter(([c]) => keep(c)).map(([c, n]) => `${c} ${n}`).join(', ')

/**
 * Refuse a Cityscapes validation list with images from outside the val cities. PRCL's
 * `CityScapes_split/150/3407/valid_filename.txt` lists the 1,525 *test* images (labels not public;
 * prcl-method.md §12.2, quirk Q-eval-5): that case gets its own explanation.
 */
export function checkCityscapesVal(entries: SplitEntry[], file = 'the val list'): void {
  const counts = countCities(entries)
  const isTest = (c: string) => (TEST_CITIES as readonly string[]).includes(c)
  const notVal = (c: string) => !(VAL_CITIES as readonly string[]).includes(c)
  if (![...counts.keys()].some(notVal)) return
  const use = "use the 500-image val list instead, such as UniMatch's splits/cityscapes/val.txt (frankfurt 267, lindau 59, munster 174)"
  if ([...counts.keys()].some(isTest)) {
    throw new Error(`${file} lists ${entries.length} images from Cityscapes test cities (${listCounts(counts, isTest)}): ` +
      'it is the official test list, whose labels are not public, not the 500-image val set (frankfurt, lindau, munster). ' +
      `PRCL's CityScapes_split/150/3407/valid_filename.txt has this mistake (prcl-method.md §12.2, Q-eval-5); ${use}`)
  }
  throw new Error(`${file} lists images from cities outside the Cityscapes val set (${listCounts(counts, notVal)}); ` +
    `a val list must come from frankfurt, lindau and munster; ${use}`)
}

function detectLayout(root: string): CityscapesLayout {
  if (isDir(join(root, 'gtFine'))) return 'official'
  return isDir(join(root, 'train')) || isDir(join(root, 'val')) ? 'prcl' : 'official'
}

function detectLabels(labelRoot: string): CityscapesLabels {
  for (const subset of ['train', 'val']) {
    const dir = join(labelRoot, subset)
    if (!isDir(dir)) continue
    const city = readdirSync(dir).sort().find((c) => isDir(join(dir, c)))
    if (city === undefined) continue
    const names = readdirSync(join(dir, city))
    if (names.some((n) => n.endsWith('_gtFine_labelTrainIds.png'))) return 'labelTrainIds'
  }
  return 'labelIds' // what the official archive ships; also the default when no labels are there
}

export function cityscapesDataset(root: string, opts: CityscapesOptions = {}): Dataset {
  root = resolvePath(root)
  checkRoot('Cityscapes', root)
  const layout = opts.layout ?? detectLayout(root)
  const labelRoot = layout === 'official' ? join(root, 'gtFine') : root
  const labels = opts.labels ?? detectLabels(labelRoot)
  const imageAt = (subset: string, id: string) => join(root, 'leftImg8bit', subset, cityOf(id), `${id}.png`)

  function subsetOf(e: SplitEntry, image: string, ropts: ResolveOptions): string {
    if (e.image !== undefined) {
      const s = basename(dirname(dirname(image))) // leftImg8bit/<subset>/<city>/<file>
      if (s === 'train' || s === 'val' || s === 'test') return s
    }
    if (ropts.subset) return ropts.subset
    return isFile(imageAt('train', e.id)) ? 'train' : isFile(imageAt('val', e.id)) ? 'val' : 'train'
  }

  function resolve(entries: SplitEntry[], ropts: ResolveOptions): SampleRef[] {
    const where = ropts.splitFile ?? 'the split'
    if (ropts.needLabels && [...countCities(entries).keys()].some((c) => (TEST_CITIES as readonly string[]).includes(c))) {
      checkCityscapesVal(entries, where)
    }
    const refs = entries.map((e): SampleRef => {
      if (e.image === undefined && (!e.id.endsWith(SUFFIX) || !e.id.slice(0, -SUFFIX.length).includes('_'))) {
        throw new Error(`${where}:${e.line}: '${e.id}' is not a Cityscapes image stem; expected <city>_<seq>_<frame>_leftImg8bit`)
      }
      const image = e.image !== undefined ? resolvePath(root, e.image) : ''
      const subset = subsetOf(e, image, ropts)
      const base = e.id.endsWith(SUFFIX) ? e.id.slice(0, -SUFFIX.length) : e.id
      const label = !ropts.needLabels ? null
        : e.label !== undefined ? resolvePath(root, e.label)
        : join(labelRoot, subset, cityOf(e.id), `${base}_gtFine_${labels}.png`)
      return { id: e.id, image: image || imageAt(subset, e.id), label }
    })
    const hint = entries.some((e) => e.image === undefined) && !ropts.subset
      ? 'bare stems are looked for under leftImg8bit/train/ and leftImg8bit/val/'
      : undefined
    if (!ropts.allowMissing) checkSamplesExist(refs, entries, root, ropts.splitFile, hint)
    checkLabelKind(entries, refs, where)
    return refs
  }

  function checkLabelKind(entries: SplitEntry[], refs: SampleRef[], where: string): void {
    const other: CityscapesLabels = labels === 'labelIds' ? 'labelTrainIds' : 'labelIds'
    const i = refs.findIndex((r) => r.label?.endsWith(`_gtFine_${other}.png`))
    if (i < 0) return
    throw new Error(`${where}:${entries[i]!.line}: mask ${refs[i]!.label} holds ${other}, but this Cityscapes dataset ` +
      `reads ${labels}${opts.labels ? '' : ' (detected from the label folders)'}; open it with { labels: '${other}' }`)
  }

  return {
    name: 'cityscapes',
    root,
    numClasses: CITYSCAPES_CLASSES.length,
    classNames: [...CITYSCAPES_CLASSES],
    labelLut: labels === 'labelIds' ? [...LABEL_ID_TO_TRAIN_ID] : null,
    resolve,
  }
}
