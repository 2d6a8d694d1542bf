// Where the presets' split files come from. The project ships none (a split file is part of a
// result's identity, and these belong to their repositories): a missing one is named with its
// source, and a file whose content differs from the published one is reported.

export interface KnownSplit {
  /** GitHub repository and the file's path in it. */
  repo: string
  path: string
  /** First 16 hex digits of the published file's sha256, where recorded. */
  sha16?: string
}

const PRCL = 'Haoyu-Xie/PRCL'
const UNIMATCH = 'LiheYoung/UniMatch'

/** Published sha256 prefixes, keyed by the file's path in its repository — also the path a preset
 *  uses relative to data.root. */
export const KNOWN_SPLITS: Record<string, { repo: string; sha16: string }> = {
  'VOC_split/662/3407/labeled_filename.txt': { repo: PRCL, sha16: 'e9bb5d18af804179' },
  'VOC_split/662/3407/unlabeled_filename.txt': { repo: PRCL, sha16: 'a9a7e39271779cca' },
  'VOC_split/662/3407/valid_filename.txt': { repo: PRCL, sha16: '6f8edc37993764f6' },
  'CityScapes_split/150/3407/labeled_filename.txt': { repo: PRCL, sha16: 'c6440f42f554e483' },
  'CityScapes_split/150/3407/unlabeled_filename.txt': { repo: PRCL, sha16: 'a40c9a815f19a824' },
  'splits/pascal/val.txt': { repo: UNIMATCH, sha16: 'df002e3a730c5767' },
  'splits/cityscapes/val.txt': { repo: UNIMATCH, sha16: 'cf5aa35c0e4446bc' },
  'splits/pascal/92/labeled.txt': { repo: UNIMATCH, sha16: '8a02aa6a1253178b' },
  'splits/pascal/92/unlabeled.txt': { repo: UNIMATCH, sha16: 'a3eb5ef8d2ae547f' },
  'splits/pascal/1464/labeled.txt': { repo: UNIMATCH, sha16: 'b20486876df309c5' },
  'splits/pascal/1464/unlabeled.txt': { repo: UNIMATCH, sha16: '3ba331d08fee0751' },
  'splits/pascal/1_16/labeled.txt': { repo: UNIMATCH, sha16: '0f5e114e6504c8af' },
  'splits/pascal/1_16/unlabeled.txt': { repo: UNIMATCH, sha16: '29b30bf7adb5d39e' },
  'splits/cityscapes/1_16/labeled.txt': { repo: UNIMATCH, sha16: '64195914dce12311' },
  'splits/cityscapes/1_16/unlabeled.txt': { repo: UNIMATCH, sha16: '7f18e2aefb5e8859' },
}

/** The source of a preset's split path; UniMatch's other splits follow its layout (no hash recorded). */
export function knownSplit(relPath: string): KnownSplit | undefined {
  const path = relPath.replace(/\\/g, '/').replace(/^\.\//, '')
  if (KNOWN_SPLITS[path]) return { ...KNOWN_SPLITS[path], path }
  return /^splits\/(pascal|cityscapes)\/[^/]+\/(un)?labeled\.txt$/.test(path) ? { repo: UNIMATCH, path } : undefined
}

/** What to tell a user whose split file `abs` (the configured `relPath`) is missing. */
export function missingSplitHelp(which: string, relPath: string, abs: string): string {
  const k = knownSplit(relPath)
  const where = k
    ? ` It is ${k.path} of github.com/${k.repo}${k.sha16 ? ` (sha256 ${k.sha16}…)` : ''}: copy it to that path, or`
    : ' Put the file there, or'
  return `data.splits.${which}: ${abs} does not exist.${where} point at your copy with --set data.splits.${which}=PATH ` +
    '(relative to data.root, or absolute). The split is part of the result\'s identity; the project ships none.'
}
