// A plain folder dataset for one's own data:
//   <root>/images/<id>.jpg | .jpeg | .png
//   <root>/masks/<id>.png           (class indices 0..n-1, 255 = ignore; unlabeled lists need none)
//   <root>/classes.txt              (one class name per line; the number of lines = classes)
// Split entries may be bare ids, image paths relative to the root, or image/mask pairs.
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve as resolvePath } from 'node:path'
import { checkRoot, checkSamplesExist, isDir, type Dataset, type ResolveOptions, type SampleRef } from './dataset.ts'
import { fileStem, type SplitEntry } from './splits.ts'

const IMAGE_EXT = /\.(jpe?g|png)$/i

/** Read classes.txt: one non-empty name per line, no duplicates, 1..255 names. */
export function readClassNames(file: string): string[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new Error(e.code === 'ENOENT'
      ? `${file} does not exist; a folder dataset needs classes.txt with one class name per line`
      : `cannot read ${file}: ${e.message}`, { cause: err })
  }
  const lines = text.replace(/^\uFEFF/, '').split('\n')
  if (lines.at(-1) === '') lines.pop()
  const names = lines.map((l, i) => {
    const name = l.endsWith('\r') ? l.slice(0, -1) : l
    if (name.trim() === '') throw new Error(`${file}:${i + 1}: blank line; expected one class name per line`)
    if (name.trim() !== name) throw new Error(`${file}:${i + 1}: leading or trailing whitespace in ${JSON.stringify(name)}`)
    const before = lines.findIndex((o, j) => j < i && (o.endsWith('\r') ? o.slice(0, -1) : o) === name)
    if (before >= 0) throw new Error(`${file}:${i + 1}: duplicate class name '${name}' (also on line ${before + 1})`)
    return name
  })
  if (names.length < 1 || names.length > 255) {
    throw new Error(`${file} names ${names.length} classes; expected 1 to 255 (label value 255 means ignore)`)
  }
  return names
}

/** Map id → image file name in <root>/images (read once per resolve). */
function listImages(dir: string): Map<string, string[]> {
  const byId = new Map<string, string[]>()
  if (!isDir(dir)) return byId
  for (const name of readdirSync(dir)) {
    if (!IMAGE_EXT.test(name)) continue
    const id = fileStem(name)
    byId.set(id, [...(byId.get(id) ?? []), name])
  }
  return byId
}

export function folderDataset(root: string): Dataset {
  root = resolvePath(root)
  checkRoot('folder', root)
  const classNames = readClassNames(join(root, 'classes.txt'))
  const imagesDir = join(root, 'images')
  return {
    name: 'folder',
    root,
    numClasses: classNames.length,
    classNames,
    labelLut: null,
    resolve(entries: SplitEntry[], opts: ResolveOptions): SampleRef[] {
      const where = opts.splitFile ?? 'the split'
      const byId = entries.some((e) => e.image === undefined) ? listImages(imagesDir) : new Map<string, string[]>()
      const refs = entries.map((e): SampleRef => {
        let image: string
        if (e.image !== undefined) image = resolvePath(root, e.image)
        else {
          const names = byId.get(e.id) ?? [`${e.id}.jpg`]
          if (names.length > 1) throw new Error(`${where}:${e.line}: '${e.id}' matches ${names.map((n) => `images/${n}`).join(' and ')}; keep one`)
          image = join(imagesDir, names[0]!)
        }
        const label = !opts.needLabels ? null : resolvePath(root, e.label ?? join('masks', `${e.id}.png`))
        return { id: e.id, image, label }
      })
      if (!opts.allowMissing) checkSamplesExist(refs, entries, root, opts.splitFile, 'bare ids are looked for as images/<id>.jpg, .jpeg or .png and masks/<id>.png')
      return refs
    },
  }
}
